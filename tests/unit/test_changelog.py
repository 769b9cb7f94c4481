"""Every kind of change comes back from its stored record as it went in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from allotment.domain.changes import (
    ApiKeyChanged,
    CatalogChanged,
    Change,
    CreditsChanged,
    CustomerChanged,
    HoldEnded,
    HoldPlaced,
    Spend,
    UsageRecorded,
)
from allotment.domain.customers import ApiKey, Scope
from allotment.domain.reservations import Reservation
from allotment.service.changelog import decode_change, encode_change

AT = datetime(2026, 12, 6, 12, 30, 0, 123456, tzinfo=UTC)
HOLD = Reservation(
    "res_1",
    "acme",
    "calls",
    "agent",
    3,
    "credits",
    1_500_000,
    AT,
    AT,
    entity_path=("agent", "team"),
)

CHANGES: list[Change] = [
    CatalogChanged("plan", "pro", {"name": "Pro", "entitlements": {"sso": {}}}),
    CustomerChanged("acme"),
    UsageRecorded("acme", "calls", "agent", -7, AT, ("agent", "team")),
    UsageRecorded("acme", "calls", None, 1, AT, ()),
    CreditsChanged("acme", "credits", -5, None, AT, (Spend(("agent",), AT, 2),)),
    CreditsChanged("acme", "credits", 10**18, 0, None),
    HoldPlaced(HOLD),
    HoldEnded("acme", "res_1"),
    ApiKeyChanged(ApiKey("key_1", "k", Scope.CLIENT, "acme", "digest", AT, AT)),
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: type(change).__name__)
def test_a_change_round_trips_through_its_record(change: Change) -> None:
    assert decode_change(change.kind.value, encode_change(change)) == change


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown change kind"):
        decode_change("plan.published", b"{}")
