"""The demo shop's data access: an index database, four shards, memcached in front.

Each method is one thing a page needs, written the way a busy PHP shop would write it,
including one deliberate N+1 (:meth:`Shop.shop_fans`) and its batched fix.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from pymemcache.client.base import Client

import ioprofiler
from demo_app.data import INDEX, SHARDS, create_and_fill

CACHE_TTL = 300
FAVORITES_SQL = "SELECT count(*) FROM FavoriteListingUser WHERE listing_id = :listing_id"
LISTING_SQL = "SELECT listing_id, title, price_cents FROM Listing WHERE listing_id = :id"
SLOW_SECONDS = 0.25


def cache_key(sql: str, listing_id: int) -> str:
    """``Etsy_Cache_Results:<hash of the query>:<listing id>``, as the original tool showed."""
    return f"Etsy_Cache_Results:{hashlib.md5(sql.encode()).hexdigest()[:14]}:{listing_id}"


class NotFound(LookupError):
    pass


def _add_sqlite_sleep(dbapi_connection: Any, record: Any) -> None:
    """SQLite has no SLEEP(); the slow page's query needs one, as MySQL has."""
    dbapi_connection.create_function("SLEEP", 1, lambda seconds: time.sleep(seconds) or 0)


def _create_mysql_database(url: sa.URL) -> None:
    server = sa.create_engine(url._replace(database=None))  # URL.set() cannot unset a field
    try:
        with server.begin() as conn:
            quoted = url.database.replace("`", "``")
            conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{quoted}`")
    finally:
        server.dispose()


class Shop:
    """The marketplace's queries, routed to the right shard."""

    def __init__(self, engines: dict[str, sa.Engine], cache: Client) -> None:
        self.engines = engines
        self.cache = cache
        for name, engine in engines.items():
            ioprofiler.label(engine, name)

    @classmethod
    def from_urls(cls, url_template: str, cache: Client) -> Shop:
        """``sqlite:///data/{shard}.db`` or ``mysql+pymysql://root@127.0.0.1/shop_{shard}``.

        MySQL and MariaDB databases are created when missing; tables and sample data too.
        """
        urls = {name: sa.make_url(url_template.format(shard=name)) for name in (INDEX, *SHARDS)}
        for url in urls.values():
            if url.get_backend_name() in ("mysql", "mariadb") and url.database:
                _create_mysql_database(url)
        engines = {name: sa.create_engine(url) for name, url in urls.items()}
        for engine in engines.values():
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _add_sqlite_sleep)
        create_and_fill(engines)
        return cls(engines, cache)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        self.cache.close()

    # -- the index ----------------------------------------------------------------------

    def _index(self, sql: str, **params: Any) -> list[sa.Row]:
        with self.engines[INDEX].connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def listing_shard(self, listing_id: int) -> tuple[str, int]:
        rows = self._index(
            "SELECT shard, shop_id FROM ListingIndex WHERE listing_id = :id", id=listing_id
        )
        if not rows:
            raise NotFound(f"no listing {listing_id}")
        return rows[0].shard, rows[0].shop_id

    def shop_shard(self, shop_id: int) -> str:
        rows = self._index("SELECT shard FROM ShopIndex WHERE shop_id = :id", id=shop_id)
        if not rows:
            raise NotFound(f"no shop {shop_id}")
        return rows[0].shard

    def _query(self, shard: str, sql: str, **params: Any) -> list[sa.Row]:
        with self.engines[shard].connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    # -- pages' data --------------------------------------------------------------------

    def listing(self, listing_id: int) -> dict[str, Any]:
        """The listing, its shop and its favorites count, cached as one memcached entry."""
        key = cache_key(LISTING_SQL, listing_id)
        cached = self.cache.get(key)
        if cached is not None:
            return json.loads(cached)
        shard, shop_id = self.listing_shard(listing_id)
        (listing,) = self._query(shard, LISTING_SQL, id=listing_id)
        (shop,) = self._query(
            shard, "SELECT shop_id, name FROM Shop WHERE shop_id = :id", id=shop_id
        )
        favorites = self._query(shard, FAVORITES_SQL, listing_id=listing_id)[0][0]
        page = {
            "listing_id": listing.listing_id,
            "title": listing.title,
            "price_cents": listing.price_cents,
            "shop": {"shop_id": shop.shop_id, "name": shop.name},
            "shard": shard,
            "favorites": favorites,
        }
        self.cache.set(key, json.dumps(page).encode(), expire=CACHE_TTL)
        return page

    def featured(self, limit: int = 12) -> list[dict[str, Any]]:
        """Featured listings from every shard, their favorites counts in one get_many."""
        listings = []
        for shard in SHARDS:
            listings += [
                {"listing_id": r.listing_id, "title": r.title, "shop_id": r.shop_id, "shard": shard}
                for r in self._query(
                    shard,
                    "SELECT listing_id, title, shop_id FROM Listing WHERE featured = :yes "
                    "ORDER BY listing_id LIMIT :n",
                    yes=True,
                    n=limit // len(SHARDS),
                )
            ]
        keys = {cache_key(FAVORITES_SQL, item["listing_id"]): item for item in listings}
        cached = self.cache.get_many(list(keys))
        missing = [item for key, item in keys.items() if key not in cached]
        counted = self._count_favorites(missing)
        if counted:
            self.cache.set_many(
                {cache_key(FAVORITES_SQL, i): str(n).encode() for i, n in counted.items()},
                expire=CACHE_TTL,
            )
        for key, item in keys.items():
            found = cached.get(key)
            item["favorites"] = int(found) if found is not None else counted[item["listing_id"]]
        return listings

    def _count_favorites(self, listings: list[dict[str, Any]]) -> dict[int, int]:
        """Favorites per listing: one grouped query per shard."""
        counts = {item["listing_id"]: 0 for item in listings}
        by_shard: dict[str, list[int]] = defaultdict(list)
        for item in listings:
            by_shard[item["shard"]].append(item["listing_id"])
        statement = sa.text(
            "SELECT listing_id, count(*) AS n FROM FavoriteListingUser "
            "WHERE listing_id IN :ids GROUP BY listing_id"
        ).bindparams(sa.bindparam("ids", expanding=True))
        for shard, ids in sorted(by_shard.items()):
            with self.engines[shard].connect() as conn:
                for row in conn.execute(statement, {"ids": ids}):
                    counts[row.listing_id] = row.n
        return counts

    def shop(self, shop_id: int) -> dict[str, Any]:
        shard = self.shop_shard(shop_id)
        rows = self._query(shard, "SELECT shop_id, name FROM Shop WHERE shop_id = :id", id=shop_id)
        listings = self._query(
            shard,
            "SELECT listing_id, title, price_cents FROM Listing WHERE shop_id = :id "
            "ORDER BY listing_id LIMIT 8",
            id=shop_id,
        )
        return {
            "shop_id": rows[0].shop_id,
            "name": rows[0].name,
            "shard": shard,
            "listings": [dict(r._mapping) for r in listings],
        }

    def shop_fans(self, shop: dict[str, Any]) -> list[str]:
        """Who favorited the shop's listings: one query per fan, on the fan's shard (an N+1)."""
        listing_ids = [item["listing_id"] for item in shop["listings"]]
        fan_ids = self._fan_ids(shop["shard"], listing_ids)
        logins = []
        for user_id in fan_ids:
            shard = self._index("SELECT shard FROM UserIndex WHERE user_id = :id", id=user_id)[
                0
            ].shard
            rows = self._query(shard, "SELECT login FROM User WHERE user_id = :id", id=user_id)
            logins.append(rows[0].login)
        return logins

    def shop_fans_batched(self, shop: dict[str, Any]) -> list[str]:
        """The same fans with one index query and one query per shard."""
        listing_ids = [item["listing_id"] for item in shop["listings"]]
        fan_ids = self._fan_ids(shop["shard"], listing_ids)
        if not fan_ids:
            return []
        by_shard: dict[str, list[int]] = defaultdict(list)
        with self.engines[INDEX].connect() as conn:
            statement = sa.text("SELECT user_id, shard FROM UserIndex WHERE user_id IN :ids")
            statement = statement.bindparams(sa.bindparam("ids", expanding=True))
            for row in conn.execute(statement, {"ids": fan_ids}):
                by_shard[row.shard].append(row.user_id)
        logins: dict[int, str] = {}
        for shard, user_ids in sorted(by_shard.items()):
            statement = sa.text("SELECT user_id, login FROM User WHERE user_id IN :ids")
            statement = statement.bindparams(sa.bindparam("ids", expanding=True))
            with self.engines[shard].connect() as conn:
                for row in conn.execute(statement, {"ids": user_ids}):
                    logins[row.user_id] = row.login
        return [logins[user_id] for user_id in fan_ids]

    def _fan_ids(self, shard: str, listing_ids: list[int]) -> list[int]:
        if not listing_ids:
            return []
        statement = sa.text(
            "SELECT DISTINCT user_id FROM FavoriteListingUser WHERE listing_id IN :ids "
            "ORDER BY user_id LIMIT 12"
        ).bindparams(sa.bindparam("ids", expanding=True))
        with self.engines[shard].connect() as conn:
            return [row.user_id for row in conn.execute(statement, {"ids": listing_ids})]

    def slow_report(self) -> float:
        """A deliberately slow query on one shard (SLEEP, in MySQL and in our SQLite)."""
        self._query("dbshard03", "SELECT SLEEP(:seconds)", seconds=SLOW_SECONDS)
        return SLOW_SECONDS

    def reviews(self, listing_id: int) -> list[str]:
        """Reviews live in a table that was never created: this query always fails."""
        shard, _ = self.listing_shard(listing_id)
        rows = self._query(
            shard, "SELECT body FROM ListingReview WHERE listing_id = :id", id=listing_id
        )
        return [r.body for r in rows]

    def shard_counts(self, shard: str) -> dict[str, int]:
        counts = {}
        for table in ("Shop", "Listing", "FavoriteListingUser"):
            counts[table] = self._query(shard, f"SELECT count(*) FROM {table}")[0][0]
        return counts
