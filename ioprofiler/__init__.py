"""ioprofiler: tcpdump for the application layer.

Every database query, cache call and HTTP call a block of code makes, timed, in order::

    import ioprofiler

    ioprofiler.install()                      # patch every supported library installed
    ioprofiler.label(engine, "dbshard01")     # optional: name a shard

    with ioprofiler.profile() as trace:
        handle_request()
    print(trace.text())
    # [dbshard01] 0.902 ms SELECT count(*) FROM FavoriteListingUser WHERE listing_id = 5773453
    # [memcache] 0.361 ms Cache HIT, keys: Etsy_Cache_Results:c812331f123321:1121231
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ioprofiler.config import Settings, configure
from ioprofiler.event import CACHE, DB, Event
from ioprofiler.registry import install, installed, uninstall
from ioprofiler.source_tree import join_integrations
from ioprofiler.thresholds import Thresholds
from ioprofiler.trace import Trace, current, profile, propagate

join_integrations(Path(__file__).parent)  # run from a clone: its top-level integrations/

__version__ = "0.1.0"

__all__ = [
    "CACHE",
    "DB",
    "Event",
    "Settings",
    "Thresholds",
    "Trace",
    "configure",
    "current",
    "install",
    "installed",
    "label",
    "profile",
    "propagate",
    "uninstall",
]


def label(engine: Any, name: str) -> None:
    """Name the shard a SQLAlchemy ``Engine`` / ``AsyncEngine``, or a raw DB-API connection
    (PyMySQL's, psycopg's ``Connection`` / ``AsyncConnection``: ``engine`` keeps its name
    for the callers that pass it by keyword), talks to.

    >>> ioprofiler.label(create_engine("mysql+pymysql://db7/shop"), "dbshard07")
    >>> ioprofiler.label(pymysql.connect(host="db7", database="shop"), "dbshard07")

    Without a label an engine or a connection is named after its database (``dbshard01``
    for ``sqlite:///data/dbshard01.db``). A label is one line of printable text: control
    characters (CR, LF, ESC, ...) are refused with ``ValueError``.
    """
    from ioprofiler.registry import labeller
    from ioprofiler.sql_text import visible

    if isinstance(name, str) and visible(name) != name:
        raise ValueError(f"a shard label must not contain control characters, not {name!r}")

    labeller(engine).label(engine, name)
