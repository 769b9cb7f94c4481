"""Events, the timers of events that time brings, and webhook endpoints with their deliveries.

``events`` holds each event under the revision of the change-log row written with it
(``EventRecorded``), so events are numbered in commit order across every process.
``event_marks`` remembers the threshold events already sent in a period, until it ends.
``event_timers`` holds what the clock will bring (a trial's end, a grant's expiry, ...), one row
per subject, which the job that takes it removes in the same transaction as the event it
writes: each is stored once.
Timers are made for the subscriptions, grants and reservations that already wait for an instant
past the migration, so nothing they have yet to reach goes unannounced.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import sequence_column

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TRIAL_WARNING_MICROS = 3 * 24 * 3600 * 1_000_000


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("customer", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("events_by_customer", "events", ["customer", "seq"])
    op.create_index("events_by_type", "events", ["type", "seq"])
    op.create_index("events_by_created_at", "events", ["created_at"])
    op.create_table(
        "event_marks",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("kept_until", sa.BigInteger, nullable=False, index=True),
    )
    op.create_table(
        "event_timers",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("due_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("customer", sa.Text),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_table(
        "webhook_endpoints",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", sa.Text),  # a JSON list of types; NULL: every type
        sa.Column("description", sa.Text),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_until", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("failing_since", sa.BigInteger),
    )
    op.create_table(
        "webhook_deliveries",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("grp", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("deliveries_by_endpoint", "webhook_deliveries", ["endpoint", "seq"])
    # The pending ones, for the worker: what is due (only a group's first has an instant), and
    # the group's next in line when one ends.
    op.create_index(
        "deliveries_pending",
        "webhook_deliveries",
        ["next_attempt_at", "seq"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "deliveries_pending_in_group",
        "webhook_deliveries",
        ["endpoint", "grp", "seq"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    _timers_for_what_already_waits()


def _timers_for_what_already_waits() -> None:
    now = time.time_ns() // 1000
    run = op.get_bind().execute
    subject = "'{\"subscription\": \"' || id || '\", \"at\": ' || COLUMN || '}'"
    live = "canceled_at IS NULL"
    for kind, column, due in (
        ("trial.will_end", "trial_ends_at", f"trial_ends_at - {_TRIAL_WARNING_MICROS}"),
        ("trial.ended", "trial_ends_at", "trial_ends_at"),
        ("subscription.expired", "ends_at", "ends_at"),
    ):
        run(
            sa.text(
                "INSERT INTO event_timers (key, due_at, customer, payload)"
                f" SELECT '{kind}:' || customer || ':' || id, {due}, customer,"
                f" {subject.replace('COLUMN', column)} FROM subscriptions"
                f" WHERE {column} IS NOT NULL AND {column} > :now AND {live}"
            ),
            {"now": now},
        )
    run(
        sa.text(
            "INSERT INTO event_timers (key, due_at, customer, payload)"
            " SELECT 'credits.expired:' || customer || ':' || currency || ':' || id, expires_at,"
            ' customer, \'{"currency": "\' || currency || \'", "grant": "\' || id'
            " || '\", \"at\": ' || expires_at || '}' FROM credit_grants"
            " WHERE expires_at IS NOT NULL AND expires_at > :now AND voided_at IS NULL"
        ),
        {"now": now},
    )
    run(
        sa.text(
            "INSERT INTO event_timers (key, due_at, customer, payload)"
            " SELECT 'reservation.expired:' || id, expires_at, customer,"
            " '{\"reservation\": \"' || id || '\", \"at\": ' || expires_at || '}'"
            " FROM reservations WHERE ended_at IS NULL AND expires_at > :now"
        ),
        {"now": now},
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("event_timers")
    op.drop_table("event_marks")
    op.drop_index("events_by_created_at", "events")
    op.drop_index("events_by_type", "events")
    op.drop_index("events_by_customer", "events")
    op.drop_table("events")
