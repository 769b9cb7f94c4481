"""The one set of migrations on PostgreSQL: the schema, its types, a round trip, and processes
that migrate one database at once."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from allotment.storage.migrate import alembic_config, sqlalchemy_url, upgrade_to_latest

TABLES_WITH_SEQ = {
    "catalog_objects",
    "customers",
    "subscriptions",
    "promotions",
    "usage_events",
    "api_keys",
    "credit_grants",
    "ledger_entries",
    "reservations",
    "entities",
    "budgets",
    "change_log",
    "change_log_head",  # its seq is the newest revision given (migration 0010)
    "events",  # its seq is the change log's revision of the transaction that wrote it
    "webhook_endpoints",
    "webhook_deliveries",
}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _version(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        return [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]


def _column_types(url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        ).fetchall()
    return {(table, column): kind for table, column, kind in rows}


def test_a_fresh_database_migrates_to_the_newest_schema_with_64_bit_sequences(
    postgres_url: str,
) -> None:
    upgrade_to_latest(postgres_url)
    assert _version(postgres_url) == [_head()]
    types = _column_types(postgres_url)
    tables = {table for table, _ in types}
    assert tables >= TABLES_WITH_SEQ
    assert "entity_consumption" in tables
    sequenced = {table for table, column in types if column == "seq"}
    assert sequenced == TABLES_WITH_SEQ
    for table in sequenced:
        assert types[(table, "seq")] == "bigint", table
    # Instants and quantities are 64-bit too; fingerprints are bytes, as the store writes them.
    assert types[("usage_events", "timestamp")] == "bigint"
    assert types[("usage_events", "amount")] == "bigint"
    assert types[("idempotency_records", "fingerprint")] == "bytea"
    assert types[("credit_grants", "expired")] == "boolean"
    assert types[("entity_consumption", "amount")] == "numeric"  # a second's sum may pass 64 bits
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT id, seq FROM change_log_head").fetchall() == [(1, 0)]
    with psycopg.connect(postgres_url) as db:
        (live,) = db.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'credit_grants_live'"
        ).fetchone() or ("",)
    assert "WHERE ((NOT expired) AND (voided_at IS NULL)" in live


def test_migrating_again_changes_nothing_and_the_migrations_go_down_and_up(
    postgres_url: str,
) -> None:
    upgrade_to_latest(postgres_url)
    upgrade_to_latest(postgres_url)
    config = alembic_config(postgres_url)
    command.downgrade(config, "base")
    with psycopg.connect(postgres_url) as db:
        left = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert left == [("alembic_version",)]
    command.upgrade(config, "head")
    assert _version(postgres_url) == [_head()]


def test_processes_that_migrate_one_database_at_once_take_turns(postgres_url: str) -> None:
    """Without the migration lock, the second process creates a table the first one made and
    fails; with it, each waits its turn and finds the schema current."""
    migrate = [sys.executable, "-m", "allotment", "migrate", "--database-url", postgres_url]
    processes = [
        subprocess.Popen(migrate, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [(process.wait(timeout=120), *process.communicate()) for process in processes]
    for returncode, out, err in outcomes:
        assert returncode == 0, err
        assert out.strip().endswith("schema is current.")
    assert _version(postgres_url) == [_head()]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        (
            "postgres://u:p@h:5433/db?sslmode=require",
            "postgresql+psycopg://u:p@h:5433/db?sslmode=require",
        ),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ],
)
def test_postgresql_urls_name_the_psycopg_driver(given: str, used: str) -> None:
    assert sqlalchemy_url(given) == used


def test_the_change_logs_head_starts_at_the_newest_revision_of_a_database_with_history(
    postgres_url: str,
) -> None:
    config = alembic_config(postgres_url)
    command.upgrade(config, "0009")
    with psycopg.connect(postgres_url) as db:
        for seq in (1, 2, 7):
            db.execute(
                "INSERT INTO change_log (seq, kind, customer, written_at, payload)"
                " VALUES (%s, 'customer.changed', 'acme', 0, '{}')",
                (seq,),
            )
    command.upgrade(config, "head")
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT seq FROM change_log_head").fetchall() == [(7,)]


# Shared by every customer (copied to each node once distributed), or the one global log.
NOT_CUSTOMER_OWNED = {
    "alembic_version",
    "catalog_objects",
    "api_keys",
    "change_log",
    "change_log_head",
    # Events are read across customers by seq, and endpoints serve every customer.
    "events",
    "event_marks",
    "event_timers",
    "webhook_endpoints",
    "webhook_deliveries",
}


def test_every_customer_owned_table_is_keyed_by_its_customer_first(postgres_url: str) -> None:
    """What a distributed PostgreSQL needs to spread the tables by customer: the customer in
    the primary key and in every unique key (``customers`` is keyed by its own id)."""
    upgrade_to_latest(postgres_url)
    with psycopg.connect(postgres_url) as db:
        keys = db.execute(
            "SELECT c.conrelid::regclass::text, c.conname,"
            " (SELECT array_agg(a.attname ORDER BY k.ordinality)"
            "  FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ordinality)"
            "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum)"
            " FROM pg_constraint c WHERE c.contype IN ('p', 'u')"
            " AND c.connamespace = 'public'::regnamespace"
        ).fetchall()
    checked = set()
    for table, name, columns in keys:
        if table in NOT_CUSTOMER_OWNED:
            continue
        owner = "id" if table == "customers" else "customer"
        assert columns[0] == owner, (table, name, columns)
        checked.add(table)
    assert len(checked) == 15  # every table but those shared or global
