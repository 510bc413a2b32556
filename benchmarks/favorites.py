"""The table every benchmark queries: FavoriteListingUser, 500 rows over 50 listings.

engine = favorites_engine(Path(directory) / "dbshard01.db")
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa


def favorites_engine(path: Path | str) -> sa.Engine:
    """A SQLite file at ``path`` holding the table, and an engine for it."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE FavoriteListingUser (id INTEGER PRIMARY KEY, listing_id INTEGER)"
        )
        conn.exec_driver_sql(
            "INSERT INTO FavoriteListingUser (listing_id) VALUES (?)",
            [(5773453 + i % 50,) for i in range(500)],
        )
    return engine
