"""Catalog versions: plans and add-ons keep every version, subscriptions name theirs.

A plan's or add-on's row in ``catalog_objects`` holds, instead of one definition, every version
it has had (``{"status", "versions": [{"version", "published_at", "parent_version",
"definition"}]}``, ``domain/documents.py``): the definition stored so far becomes version 1,
published when it was last written, and a plan's version 1 folds version 1 of its parent.

A subscription names the version of its plan it was first on (``plan_version``, 1 for every
existing one) and the migrations that moved it, or will (``plan_moves``: ``[[version, instant
in epoch microseconds, 1 for a migration made mid-period], ...]``, null when none); its add-on
entries carry theirs (``version``, ``moves``) in the ``addons`` document, read as version 1
where absent.
``subscriptions_by_plan`` and ``subscriptions_by_product`` let a migration, or a version list's
count, read the subscriptions of one plan (or one product, for an add-on) and no others.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import json
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder(float_hook=Decimal).decode


def upgrade() -> None:
    op.add_column(
        "subscriptions",
        sa.Column("plan_version", sa.Integer, nullable=False, server_default="1"),
    )
    op.add_column("subscriptions", sa.Column("plan_moves", sa.Text))
    op.create_index("subscriptions_by_plan", "subscriptions", ["plan"])
    op.create_index("subscriptions_by_product", "subscriptions", ["product"])
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT kind, id, document, updated_at FROM catalog_objects"
            " WHERE kind IN ('plan', 'addon')"
        )
    ).all()
    for kind, object_id, document, updated_at in rows:
        parent = json.loads(document).get("parent") if kind == "plan" else None
        # The definition goes in as it was written, so its numbers keep every digit.
        parent_version = "null" if parent is None else "1"
        versioned = (
            f'{{"versions": [{{"version": 1, "published_at": {updated_at},'
            f' "parent_version": {parent_version}, "definition": {document}}}],'
            ' "status": "active"}'
        )
        bind.execute(
            sa.text(
                "UPDATE catalog_objects SET document = :document WHERE kind = :kind AND id = :id"
            ),
            {"document": versioned, "kind": kind, "id": object_id},
        )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT kind, id, document FROM catalog_objects WHERE kind IN ('plan', 'addon')")
    ).all()
    for kind, object_id, document in rows:
        # Numbers read and written as exact decimals: every digit is kept.
        versions = _decode(document)["versions"]
        latest = _encode(versions[-1]["definition"]).decode()
        bind.execute(
            sa.text(
                "UPDATE catalog_objects SET document = :document WHERE kind = :kind AND id = :id"
            ),
            {"document": latest, "kind": kind, "id": object_id},
        )
    op.drop_index("subscriptions_by_product", "subscriptions")
    op.drop_index("subscriptions_by_plan", "subscriptions")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("plan_moves")
        batch.drop_column("plan_version")
