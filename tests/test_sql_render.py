"""SQL on one line with its values in place, for every DB-API paramstyle."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest

from ioprofiler.sql_text import literal, render_statement, shape


@pytest.mark.parametrize(
    ("paramstyle", "statement", "params"),
    [
        ("qmark", "SELECT * FROM t WHERE a = ? AND b = ?", (5, "x")),
        ("format", "SELECT * FROM t WHERE a = %s AND b = %s", (5, "x")),
        ("pyformat", "SELECT * FROM t WHERE a = %(a)s AND b = %(b)s", {"a": 5, "b": "x"}),
        ("named", "SELECT * FROM t WHERE a = :a AND b = :b", {"a": 5, "b": "x"}),
        ("numeric", "SELECT * FROM t WHERE a = :1 AND b = :2", (5, "x")),
        ("numeric_dollar", "SELECT * FROM t WHERE a = $1 AND b = $2", (5, "x")),
    ],
)
def test_every_paramstyle_puts_values_in_place(paramstyle, statement, params):
    rendered = render_statement(statement, params, paramstyle)
    assert rendered == "SELECT * FROM t WHERE a = 5 AND b = 'x'"


@pytest.mark.parametrize(
    ("paramstyle", "statement", "params"),
    [
        ("qmark", "SELECT * FROM t WHERE a = ?", (5,)),
        ("pyformat", "SELECT * FROM t WHERE a = %(a)s", {"a": 5}),
        ("named", "SELECT * FROM t WHERE a = :a", {"a": 5}),
    ],
)
def test_redaction_shows_question_marks(paramstyle, statement, params):
    assert render_statement(statement, params, paramstyle, redact=True) == (
        "SELECT * FROM t WHERE a = ?"
    )


def test_whitespace_is_folded_and_comments_stay_harmless():
    statement = "SELECT a,\n\t  b -- the b column\nFROM t\n/* multi\n line */ WHERE a = ?"
    assert render_statement(statement, (1,), "qmark") == (
        "SELECT a, b /* the b column */ FROM t /* multi line */ WHERE a = 1"
    )


def test_placeholders_inside_literals_and_identifiers_are_left_alone():
    statement = "SELECT '?', \"col?\", `x?` FROM t WHERE a = ? AND note = 'what?'"
    assert render_statement(statement, (7,), "qmark") == (
        "SELECT '?', \"col?\", `x?` FROM t WHERE a = 7 AND note = 'what?'"
    )


def test_postgres_casts_are_not_named_parameters():
    statement = "SELECT :a::text, '10:30'::time"
    assert render_statement(statement, {"a": 1}, "named") == "SELECT 1::text, '10:30'::time"


def test_percent_escapes_in_format_style():
    statement = "SELECT * FROM t WHERE name LIKE 'a%%' AND id = %s"
    assert render_statement(statement, (3,), "format") == (
        "SELECT * FROM t WHERE name LIKE 'a%' AND id = 3"
    )
    # Without parameters the driver sends the text as it is.
    assert render_statement("SELECT 'a%%'", None, "format") == "SELECT 'a%%'"


def test_hostile_values_stay_inside_their_quotes_on_one_line():
    rendered = render_statement(
        "INSERT INTO t VALUES (?, ?)",
        ("O'Brien'); DROP TABLE t; --", "two\nlines\x1b[31m"),
        "qmark",
    )
    assert rendered == (
        "INSERT INTO t VALUES ('O''Brien''); DROP TABLE t; --', 'two\\nlines\\x1b[31m')"
    )
    assert "\n" not in rendered and "\x1b" not in rendered


def test_executemany_shows_the_first_row_and_the_row_count():
    assert render_statement("INSERT INTO t VALUES (?)", (1,), "qmark", rows=500) == (
        "INSERT INTO t VALUES (1) -- executemany: 500 rows"
    )


def test_missing_parameters_leave_the_placeholder():
    assert render_statement("SELECT ?, ?", (1,), "qmark") == "SELECT 1, ?"
    assert render_statement("SELECT :a, :b", {"a": 1}, "named") == "SELECT 1, :b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "NULL"),
        (True, "TRUE"),
        (False, "FALSE"),
        (42, "42"),
        (1.5, "1.5"),
        (float("nan"), "'nan'"),
        (decimal.Decimal("10.50"), "10.50"),
        (b"\x00\xff", "X'00FF'"),
        (datetime.datetime(2024, 5, 1, 12, 30), "'2024-05-01 12:30:00'"),
        (datetime.date(2024, 5, 1), "'2024-05-01'"),
        (uuid.UUID(int=1), "'00000000-0000-0000-0000-000000000001'"),
        ((1, 2, "a"), "(1, 2, 'a')"),
    ],
)
def test_literals(value, expected):
    assert literal(value) == expected


def test_long_values_are_shortened_and_say_by_how_much():
    assert literal("x" * 600) == "'" + "x" * 500 + "'…(+100 chars)"


def test_shape_replaces_every_value_and_collapses_in_lists():
    assert shape("SELECT * FROM t WHERE id = ? AND s = 'a'", "qmark") == (
        "SELECT * FROM t WHERE id = ? AND s = ?"
    )
    assert shape("SELECT * FROM t WHERE id IN (?, ?, ?)", "qmark") == (
        "SELECT * FROM t WHERE id IN (?…)"
    )
    assert shape("SELECT * FROM t2 WHERE id = 5", "qmark") == "SELECT * FROM t2 WHERE id = ?"
    # one value or twelve through an expanding IN: the same query
    assert shape("SELECT * FROM t WHERE id in (?)", "qmark") == "SELECT * FROM t WHERE id in (?…)"
    assert shape("INSERT INTO t (a) VALUES (?)", "qmark") == "INSERT INTO t (a) VALUES (?)"


def test_mysql_literals_double_their_backslashes_so_they_paste_back_unchanged():
    statement = "SELECT * FROM t WHERE path = %s"
    assert render_statement(statement, ("C:\\temp",), "format", dialect="mysql") == (
        "SELECT * FROM t WHERE path = 'C:\\\\temp'"
    )
    assert render_statement(statement, ("C:\\temp",), "format", dialect="postgresql") == (
        "SELECT * FROM t WHERE path = 'C:\\temp'"
    )


def test_backslash_is_an_ordinary_character_outside_mysql():
    # In SQLite and standard PostgreSQL 'C:\' is a complete literal.
    assert render_statement("SELECT 'C:\\', ?, 'y', ?", (111, 222), "qmark", dialect="sqlite") == (
        "SELECT 'C:\\', 111, 'y', 222"
    )
    assert render_statement("SELECT 'a\\'', %s", (1,), "format", dialect="mysql") == (
        "SELECT 'a\\'', 1"
    )


def test_postgres_dollar_quotes_and_e_strings_hide_their_placeholders():
    statement = "SELECT $$it's $1$$, E'don\\'t $1', $1, $tag$ $2 $tag$, $2"
    assert render_statement(statement, (5, 6), "numeric_dollar", dialect="postgresql") == (
        "SELECT $$it's $1$$, E'don\\'t $1', 5, $tag$ $2 $tag$, 6"
    )


def test_zero_positions_name_no_parameter():
    assert render_statement("SELECT $0, $1", (1, 2), "numeric_dollar") == "SELECT $0, 1"
    assert render_statement("SELECT :0, :1", (1, 2), "numeric") == "SELECT :0, 1"


def test_mysql_comments():
    statement = "SELECT 1--1, %s # trailing\n, %s -- real comment\n"
    assert render_statement(statement, (2, 3), "format", dialect="mysql") == (
        "SELECT 1--1, 2 /* trailing */ , 3 /* real comment */"
    )


def test_unterminated_quotes_run_to_the_end_of_the_statement():
    # The speed of this case (it was quadratic) is covered in benchmarks/rendering.py.
    assert render_statement("SELECT ? 'open ?", (1,), "qmark") == "SELECT 1 'open ?"
    assert render_statement("SELECT %s 'a\\", (1,), "format", dialect="mysql") == ("SELECT 1 'a\\")


def test_values_that_cannot_print_themselves_never_raise():
    class Evil:
        def __str__(self):
            raise RuntimeError("str")

        def __repr__(self):
            raise RuntimeError("repr")

    rendered = render_statement("SELECT ?", (Evil(),), "qmark")
    assert rendered.startswith("SELECT ? -- params: (<")
    assert "Evil object at" in rendered and rendered.endswith(">,)")


@pytest.mark.parametrize(
    ("dialect", "statement", "params"),
    [
        ("sqlite", "SELECT * FROM t WHERE a = ? AND name = 's3cr3t' AND n > 42", (5,)),
        ("mysql", "SELECT * FROM t WHERE a = %s AND name = 's3\\'cr3t' AND n > 42", (5,)),
        ("postgresql", "SELECT * FROM t WHERE a = %(a)s AND name = E's3cr3t' AND n > 42", {"a": 5}),
    ],
)
def test_redaction_hides_values_written_into_the_statement(dialect, statement, params):
    paramstyle = {"sqlite": "qmark", "mysql": "format", "postgresql": "pyformat"}[dialect]
    assert render_statement(statement, params, paramstyle, redact=True, dialect=dialect) == (
        "SELECT * FROM t WHERE a = ? AND name = ? AND n > ?"
    )
    unbound = render_statement(statement, None, paramstyle, redact=True, dialect=dialect)
    assert "s3" not in unbound and "42" not in unbound


def test_configured_redaction_hides_inline_literals_in_every_rendering(sqlite_shards):
    import json

    import sqlalchemy as sa

    import ioprofiler
    from ioprofiler.render.json import render_json

    ioprofiler.configure(redact=True)
    engine = sqlite_shards["dbshard01"]
    with ioprofiler.profile() as trace:
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM FavoriteListingUser WHERE note = 's3cr3t' AND id = :id"
                ),
                {"id": 7},
            ).scalar_one()
    listing = trace.text(callsites=True)
    assert "WHERE note = ? AND id = ?" in listing, listing
    document = render_json(trace)
    assert "s3cr3t" not in listing + document
    (select,) = [e for e in json.loads(document)["events"] if e["sql"]]
    assert (
        select["statement"] == "SELECT count(*) FROM FavoriteListingUser WHERE note = ? AND id = ?"
    )


class _Unprintable:
    def __str__(self):
        raise RuntimeError("str")

    def __repr__(self):
        raise RuntimeError("repr")


@pytest.mark.parametrize(
    ("paramstyle", "statement", "params", "rows", "dialect"),
    [
        ("qmark", "SELECT * FROM t WHERE a = ? AND b = ?", (5, "x<y>&'\""), None, "sqlite"),
        ("qmark", "SELECT  *\n FROM t -- <note>\n WHERE a = ?", (-12,), None, None),
        ("qmark", "SELECT '<?>' , ?, ?", (1,), None, None),  # one value missing
        ("qmark", "INSERT INTO t VALUES (?, ?)", (1, b"\x00<"), 500, None),
        ("qmark", "INSERT INTO t VALUES (?)", None, 1, None),
        ("qmark", "SELECT 'a\u2028b', \"<id>\"", None, None, None),
        ("qmark", "SELECT ?", ("line\nbreak\x1b[31m",), None, None),
        ("qmark", "SELECT ?", (_Unprintable(),), None, None),
        ("qmark", "SELECT ?", (10**5000,), None, None),  # past int's digits limit
        ("qmark", "SELECT ?, ?, ?", (None, True, 1.5), None, None),
        ("qmark", "SELECT ?", {"a": 1}, None, None),  # a mapping for a positional statement
        ("format", "SELECT * FROM t WHERE a = %s AND b LIKE 'a%%'", ("C:\\<x>",), None, "mysql"),
        ("pyformat", "SELECT %(a)s, %(b)s, '%%'", {"a": "<&>", "b": [1, "2"]}, None, "postgresql"),
        ("pyformat", "SELECT %(a)s, %(missing)s", {"a": 1}, None, None),
        ("named", "SELECT :a, :b, 1::text", {"a": decimal.Decimal("1.10"), "b": None}, None, None),
        ("numeric", "SELECT :1, :0, :2", (5, "x"), None, None),
        ("numeric", "SELECT :1", {"1": "<"}, None, None),
        ("numeric_dollar", "SELECT $1, $2, $tag$ $1 $tag$", (5, "x"), None, "postgresql"),
        ("psycopg", "SELECT %b, %t, %(n)s", (1, 2), None, "postgresql"),
        (None, "SELECT ?", (1,), None, None),  # no paramstyle known
        ("qmark", "SELECT ?", (datetime.datetime(2024, 5, 1, 12, 30),), None, None),
        ("qmark", "SELECT ?", (uuid.UUID(int=1),), None, None),
    ],
)
def test_escaped_rendering_is_the_rendering_escaped(paramstyle, statement, params, rows, dialect):
    """The panel's fast path gives what escaping the listing's text gives."""
    from html import escape

    from ioprofiler.sql_text import render_statement_escaped

    expected = escape(render_statement(statement, params, paramstyle, rows, False, dialect))
    for _ in range(2):  # the escaped template made, then remembered
        assert (
            render_statement_escaped(statement, params, paramstyle, rows, dialect, escape)
            == expected
        )
