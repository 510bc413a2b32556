"""The demo shop's data: an index database and four shards, made once, deterministically.

The index maps shops, listings and users to their shard, the way large PHP/MySQL shops did:
every shard holds whole shops (with their listings and the favorites on them) and whole users.
"""

from __future__ import annotations

import random

import sqlalchemy as sa

SHARDS = ("dbshard01", "dbshard02", "dbshard03", "dbshard04")
INDEX = "index"
SEED = 5773453
SHOPS = 200
USERS = 1000
LISTINGS_PER_SHOP = (5, 30)
FAVORITES_PER_LISTING = (0, 8)
FIRST_LISTING_ID = 5773400

index_metadata = sa.MetaData()
ShopIndex = sa.Table(
    "ShopIndex",
    index_metadata,
    sa.Column("shop_id", sa.Integer, primary_key=True),
    sa.Column("shard", sa.String(20), nullable=False),
)
ListingIndex = sa.Table(
    "ListingIndex",
    index_metadata,
    sa.Column("listing_id", sa.Integer, primary_key=True),
    sa.Column("shop_id", sa.Integer, nullable=False),
    sa.Column("shard", sa.String(20), nullable=False),
)
UserIndex = sa.Table(
    "UserIndex",
    index_metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("shard", sa.String(20), nullable=False),
)

shard_metadata = sa.MetaData()
Shop = sa.Table(
    "Shop",
    shard_metadata,
    sa.Column("shop_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("owner_id", sa.Integer, nullable=False),
)
Listing = sa.Table(
    "Listing",
    shard_metadata,
    sa.Column("listing_id", sa.Integer, primary_key=True),
    sa.Column("shop_id", sa.Integer, nullable=False, index=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("price_cents", sa.Integer, nullable=False),
    sa.Column("featured", sa.Boolean, nullable=False, default=False),
)
User = sa.Table(
    "User",
    shard_metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("login", sa.String(60), nullable=False),
)
FavoriteListingUser = sa.Table(
    "FavoriteListingUser",
    shard_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("listing_id", sa.Integer, nullable=False, index=True),
    sa.Column("user_id", sa.Integer, nullable=False),
)

_ADJECTIVES = ("Handmade", "Vintage", "Linen", "Ceramic", "Walnut", "Brass", "Wool", "Indigo")
_THINGS = ("mug", "scarf", "lamp", "print", "bowl", "necklace", "quilt", "planter", "journal")
_SHOP_WORDS = ("Studio", "Workshop", "Goods", "Atelier", "Supply", "House", "Co.")
_NAMES = ("maple", "fern", "otter", "juniper", "clay", "harbor", "willow", "ember", "moss")


def generate(rng: random.Random) -> dict[str, dict[str, list[dict]]]:
    """Rows per database and table. The same seed gives the same shop."""
    rows: dict[str, dict[str, list[dict]]] = {
        name: {"Shop": [], "Listing": [], "User": [], "FavoriteListingUser": []} for name in SHARDS
    }
    index: dict[str, list[dict]] = {"ShopIndex": [], "ListingIndex": [], "UserIndex": []}
    user_shard = {}
    for user_id in range(1, USERS + 1):
        shard = SHARDS[rng.randrange(len(SHARDS))]
        user_shard[user_id] = shard
        login = f"{rng.choice(_NAMES)}_{rng.choice(_NAMES)}{user_id}"
        rows[shard]["User"].append({"user_id": user_id, "login": login})
        index["UserIndex"].append({"user_id": user_id, "shard": shard})
    listing_id = FIRST_LISTING_ID
    for shop_id in range(1, SHOPS + 1):
        shard = SHARDS[(shop_id - 1) % len(SHARDS)]
        name = f"{rng.choice(_NAMES).title()} {rng.choice(_SHOP_WORDS)}"
        owner = rng.randrange(1, USERS + 1)
        rows[shard]["Shop"].append({"shop_id": shop_id, "name": name, "owner_id": owner})
        index["ShopIndex"].append({"shop_id": shop_id, "shard": shard})
        for _ in range(rng.randint(*LISTINGS_PER_SHOP)):
            listing_id += 1
            title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_THINGS)}"
            rows[shard]["Listing"].append(
                {
                    "listing_id": listing_id,
                    "shop_id": shop_id,
                    "title": title,
                    "price_cents": rng.randrange(500, 25000),
                    "featured": rng.random() < 0.02,
                }
            )
            index["ListingIndex"].append(
                {"listing_id": listing_id, "shop_id": shop_id, "shard": shard}
            )
            fans = rng.sample(range(1, USERS + 1), rng.randint(*FAVORITES_PER_LISTING))
            for user_id in fans:
                rows[shard]["FavoriteListingUser"].append(
                    {"listing_id": listing_id, "user_id": user_id}
                )
    rows[INDEX] = index
    return rows


def create_and_fill(engines: dict[str, sa.Engine]) -> bool:
    """Create the tables and the sample data where they are missing; True if it filled any."""
    data = generate(random.Random(SEED))
    filled = False
    for name, engine in engines.items():
        metadata = index_metadata if name == INDEX else shard_metadata
        metadata.create_all(engine)
        first_table = "ShopIndex" if name == INDEX else "Shop"
        with engine.begin() as conn:
            if conn.execute(
                sa.select(sa.func.count()).select_from(metadata.tables[first_table])
            ).scalar():
                continue
            for table_name, table_rows in data[name].items():
                if table_rows:
                    conn.execute(metadata.tables[table_name].insert(), table_rows)
            filled = True
    return filled
