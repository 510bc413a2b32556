"""Recorded parameters are owned by the trace: the caller's objects are neither kept
alive, nor pinned, nor shown as they became after the call."""

from __future__ import annotations

import datetime
import decimal
import enum
import gc
import json
import uuid
import weakref

import pytest
import sqlalchemy as sa

import ioprofiler
from ioprofiler.render.json import _jsonable
from ioprofiler.sql_text import literal
from ioprofiler.values import MAX_BYTES, Clipped, snapshot

metadata = sa.MetaData()
photos = sa.Table(
    "photos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary),
)


class PhotoBlob(bytearray):
    """A caller's own bytes-like type, as in SQLAlchemy's test_cache_noleak_on_statement_values."""


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'photos.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def stored(engine) -> list[bytes]:
    with engine.connect() as conn:
        return [bytes(row.data) for row in conn.execute(sa.select(photos.c.data))]


def test_a_bytearray_bound_to_a_blob_can_still_grow_while_the_trace_is_open(engine):
    buf = bytearray(b"abc")
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.execute(photos.insert(), {"data": buf})  # SQLite gets memoryview(buf)
        buf.extend(b"def")  # BufferError while a memoryview over it is alive
    assert buf == b"abcdef"
    assert stored(engine) == [b"abc"]
    assert trace.count(kind="db") == 1


def test_the_listing_shows_the_value_sent_not_what_it_became_after(engine):
    buf = bytearray(b"abc")
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.execute(photos.insert(), {"data": buf})
        buf[:] = b"XYZ"
    assert stored(engine) == [b"abc"]
    (insert,) = [e for e in trace.events if (e.statement or "").startswith("INSERT")]
    assert insert.sql == "INSERT INTO photos (data) VALUES (X'616263')"


def test_the_callers_objects_are_not_kept_alive_by_the_trace(engine):
    blob = PhotoBlob(b"\x00" * 1000)
    collected = []
    weakref.finalize(blob, collected.append, "blob")
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.execute(photos.insert(), {"data": blob})
        del blob
        gc.collect()
        assert collected == ["blob"]
    (insert,) = [e for e in trace.events if (e.statement or "").startswith("INSERT")]
    assert insert.sql == (
        f"INSERT INTO photos (data) VALUES (X'{'00' * MAX_BYTES}'…(+{1000 - MAX_BYTES} bytes))"
    )


def test_executemany_keeps_its_first_row_owned(engine):
    rows = [{"data": bytearray(b"one")}, {"data": bytearray(b"two")}]
    with ioprofiler.profile() as trace:
        with engine.begin() as conn:
            conn.execute(photos.insert(), rows)
        rows[0]["data"].extend(b"!")
    (insert,) = [e for e in trace.events if (e.statement or "").startswith("INSERT")]
    assert insert.rows == 2
    assert insert.params == (b"one",)


class Colour(enum.Enum):
    RED = "red"


class Name(str):
    pass


class Money:
    def __init__(self, amount: int) -> None:
        self.amount = amount

    def __str__(self) -> str:
        return f"{self.amount} EUR"


VALUES = [
    1,
    -2.5,
    "O'Brien",
    None,
    True,
    decimal.Decimal("1.10"),
    datetime.datetime(2026, 11, 27, 11, 0),
    datetime.date(2026, 11, 27),
    uuid.UUID(int=5),
    Colour.RED,
    Name("quoted_name"),
    b"\x00\x01",
    bytearray(b"abc"),
    memoryview(b"x" * 2000),
    "é" * 3000,
    list(range(250)),
    (1, "two", bytearray(b"3")),
    Money(5),
    Money(10**600),
    {"nested": [1, 2]},
]


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ for v in VALUES])
def test_an_owned_value_renders_as_the_original_did(value):
    (kept,) = snapshot((value,))
    assert literal(kept) == literal(value)
    assert literal(kept, backslash_escapes=True) == literal(value, backslash_escapes=True)
    json.dumps(_jsonable(kept))  # always JSON-able


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ for v in VALUES])
def test_an_owned_value_holds_nothing_of_the_callers(value):
    (kept,) = snapshot((value,))
    immutable = (int, float, str, type(None), decimal.Decimal, datetime.date, uuid.UUID, Colour)
    for part in kept.head if isinstance(kept, Clipped) else [kept]:
        if isinstance(part, tuple):
            assert all(type(item) in (int, str, bytes) for item in part)
        else:
            assert type(part) in (*immutable, bytes, bool, datetime.datetime), type(part)


def test_immutable_parameters_are_kept_without_a_copy_and_mappings_are_copied():
    params = (5773453, "x", None)
    assert snapshot(params) is params
    named = {"listing_id": 5773453}
    kept = snapshot(named)
    named["listing_id"] = 1
    assert kept == {"listing_id": 5773453}


def test_a_value_whose_str_fails_is_recorded_as_what_it_is():
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

    (kept,) = snapshot((Hostile(),))
    assert kept.startswith("<") and "Hostile object at" in kept
