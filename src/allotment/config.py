"""Settings, read once at start-up and passed down."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

DEFAULT_DATABASE = Path("allotment.db")
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_CHANGE_LOG_RETENTION = timedelta(days=7)
MIN_CHANGE_LOG_RETENTION = timedelta(hours=1)  # the change feed's contract
# Idempotency keys of usage reports: API.md promises at least 7 days (other writes: forever).
DEFAULT_USAGE_KEY_RETENTION = MIN_USAGE_KEY_RETENTION = timedelta(days=7)
DEFAULT_STREAM_KEEPALIVE_SECONDS = 10.0
DEFAULT_CACHE_CUSTOMERS = 100_000  # customers whose snapshot a process keeps in memory
DEFAULT_CACHE_POOLS = 100_000  # credit pools the SQLite store keeps between batches
DEFAULT_CACHE_COUNTERS = 200_000  # series of window counters it keeps between batches
DEFAULT_SQLITE_CACHE_MIB = 64  # SQLite's page cache, per connection (its own default: 2 MiB)
MAX_SQLITE_CACHE_MIB = 1_048_576  # PRAGMA cache_size takes KiB in 32 bits
# Pages the write-ahead log takes in before SQLite copies them into the database (its own
# default: 1,000). A page that many batches write is copied once per checkpoint, so a longer
# log copies each busy page less often: the log grows to about 40 MiB between checkpoints.
DEFAULT_SQLITE_WAL_PAGES = 10_000
MAX_SQLITE_WAL_PAGES = 1_000_000


@dataclass(frozen=True, slots=True)
class Settings:
    database_path: Path = DEFAULT_DATABASE
    database_url: str | None = None  # when given, it names the database instead of the path
    admin_key: str | None = None
    test_clock: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    change_log_retention: timedelta = DEFAULT_CHANGE_LOG_RETENTION
    usage_key_retention: timedelta = DEFAULT_USAGE_KEY_RETENTION
    stream_keepalive_seconds: float = DEFAULT_STREAM_KEEPALIVE_SECONDS
    cors_origins: tuple[str, ...] = ()  # browser origins the client routes answer; none: no CORS
    access_log_sample: float = 0.0  # the share of requests the access log writes a line for
    cache_customers: int = DEFAULT_CACHE_CUSTOMERS
    cache_pools: int = DEFAULT_CACHE_POOLS
    cache_counters: int = DEFAULT_CACHE_COUNTERS
    sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB
    sqlite_wal_pages: int = DEFAULT_SQLITE_WAL_PAGES
    gc_freeze: bool = True  # freeze what the caches hold as they fill (``api/memory.py``)
    # PostgreSQL: let psycopg prepare statements it runs often; off behind a pooler in
    # transaction mode that cannot keep them (PgBouncer before 1.21).
    postgres_prepared_statements: bool = True
    # Webhook endpoints may name loopback and private addresses (receivers inside the network a
    # self-hosted service runs in); off, such URLs are refused and so are hosts resolving there.
    webhook_private_addresses: bool = True

    def __post_init__(self) -> None:
        if min(self.cache_customers, self.cache_pools, self.cache_counters) < 1:
            raise ValueError("a cache must hold at least one entry")
        if not 1 <= self.sqlite_cache_mib <= MAX_SQLITE_CACHE_MIB:
            raise ValueError(
                f"SQLite's page cache must hold at least 1 MiB and at most {MAX_SQLITE_CACHE_MIB}"
                " (ALLOTMENT_SQLITE_CACHE_MIB)"
            )
        if not 1 <= self.sqlite_wal_pages <= MAX_SQLITE_WAL_PAGES:
            raise ValueError(
                "SQLite's write-ahead log must take at least 1 page and at most"
                f" {MAX_SQLITE_WAL_PAGES:,} before a checkpoint (ALLOTMENT_SQLITE_WAL_PAGES)"
            )
        if not 0 <= self.access_log_sample <= 1:
            raise ValueError("the access log's sample rate is a share from 0 to 1")
        if self.change_log_retention < MIN_CHANGE_LOG_RETENTION:
            raise ValueError("the change log must keep at least one hour of history")
        if self.usage_key_retention < MIN_USAGE_KEY_RETENTION:
            raise ValueError(
                "usage reports' idempotency keys must be kept at least 7 days"
                " (ALLOTMENT_USAGE_KEY_RETENTION_DAYS)"
            )
        if not 0 < self.stream_keepalive_seconds <= 15:
            raise ValueError("the stream's keep-alive must come within 15 seconds")

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "admin_key": env.get("ALLOTMENT_ADMIN_KEY") or None,
            "test_clock": env.get("ALLOTMENT_TEST_CLOCK", "") in {"1", "true", "yes"},
        }
        for variable, setting in _SWITCHES:
            if env.get(variable):
                switch = env[variable].lower()
                if switch not in {"1", "true", "yes", "0", "false", "no"}:
                    raise ValueError(f"{variable} must be 1, true, yes, 0, false or no")
                values[setting] = switch in {"1", "true", "yes"}
        if env.get("ALLOTMENT_CHANGE_LOG_RETENTION_HOURS"):
            hours = env["ALLOTMENT_CHANGE_LOG_RETENTION_HOURS"]
            if not (hours.isascii() and hours.isdigit() and len(hours) <= 6):
                raise ValueError("ALLOTMENT_CHANGE_LOG_RETENTION_HOURS must be a whole number")
            values["change_log_retention"] = timedelta(hours=int(hours))
        if env.get("ALLOTMENT_USAGE_KEY_RETENTION_DAYS"):
            days = env["ALLOTMENT_USAGE_KEY_RETENTION_DAYS"]
            if not (days.isascii() and days.isdigit() and len(days) <= 5):
                raise ValueError("ALLOTMENT_USAGE_KEY_RETENTION_DAYS must be a whole number")
            values["usage_key_retention"] = timedelta(days=int(days))
        for variable, setting in _CACHE_SIZES:
            if env.get(variable):
                size = env[variable]
                if not (size.isascii() and size.isdigit() and len(size) <= 9):
                    raise ValueError(f"{variable} must be a whole number")
                values[setting] = int(size)
        if env.get("ALLOTMENT_DATABASE_URL"):
            values["database_url"] = env["ALLOTMENT_DATABASE_URL"]
        if env.get("ALLOTMENT_DB"):
            values["database_path"] = Path(env["ALLOTMENT_DB"])
        if env.get("ALLOTMENT_CORS_ORIGINS"):
            values["cors_origins"] = parse_origins(env["ALLOTMENT_CORS_ORIGINS"].split(","))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


_SWITCHES = (
    ("ALLOTMENT_GC_FREEZE", "gc_freeze"),
    ("ALLOTMENT_POSTGRES_PREPARED_STATEMENTS", "postgres_prepared_statements"),
    ("ALLOTMENT_WEBHOOK_PRIVATE_ADDRESSES", "webhook_private_addresses"),
)
_CACHE_SIZES = (
    ("ALLOTMENT_CACHE_CUSTOMERS", "cache_customers"),
    ("ALLOTMENT_CACHE_POOLS", "cache_pools"),
    ("ALLOTMENT_CACHE_COUNTERS", "cache_counters"),
    ("ALLOTMENT_SQLITE_CACHE_MIB", "sqlite_cache_mib"),
    ("ALLOTMENT_SQLITE_WAL_PAGES", "sqlite_wal_pages"),
)


def parse_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """Origins as a browser sends them (``https://app.example.com``, no path or trailing slash),
    or ``*`` for any; blanks dropped."""
    parsed = tuple(origin.strip().rstrip("/") for origin in origins if origin.strip())
    for origin in parsed:
        if origin != "*" and not (
            origin.startswith(("http://", "https://")) and "/" not in origin.split("://", 1)[1]
        ):
            raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port]")
    return parsed
