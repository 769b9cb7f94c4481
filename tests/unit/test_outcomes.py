"""Idempotency records keep outcomes exactly: a replay is the first outcome, typed again."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from allotment.domain.catalog import CreditCategory, Enforcement, FeatureKind
from allotment.domain.credits import GrantStatus
from allotment.domain.periods import ResetPeriod
from allotment.domain.resolution import DenialReason, SourceType
from allotment.service.answers import BudgetView, CheckAnswer, SourceView
from allotment.service.outcomes import (
    DEBIT_RECORD,
    DEBIT_RECORD_V1_FIELDS,
    GRANT_RECORD,
    GRANT_RECORD_V1_FIELDS,
    RECORD_V1,
    RESERVATION_RECORD,
    RESERVATION_RECORD_V1_FIELDS,
    USAGE_RECORD,
    USAGE_RECORD_V1_FIELDS,
    DebitEntry,
    DebitOutcome,
    GrantOutcome,
    OutcomeRecord,
    ReservationOutcome,
    UsageOutcome,
    flat_usage_json,
)

FULL_ANSWER = CheckAnswer(
    customer="acme",
    feature="tokens",
    entity="agent-7",
    has_access=True,
    access_denied_reason=None,
    kind=FeatureKind.METERED,
    usage_limit=Decimal("1000.5"),
    current_usage=12,
    reserved=Decimal("0.000001"),
    remaining=Decimal("988.499999"),
    requested=1,
    enforcement=Enforcement.HARD,
    reset_period=ResetPeriod.MONTH,
    usage_period_start="2026-12-01T00:00:00Z",
    usage_period_end="2027-01-01T00:00:00Z",
    source=SourceView(type=SourceType.PLAN, id="team"),
    budgets=[
        BudgetView(
            entity="team-a",
            target="tokens",
            limit=500,
            usage=Decimal("12.25"),
            reserved=0,
            reset=ResetPeriod.DAY,
            enforcement=Enforcement.SOFT,
            usage_period_end=None,
        )
    ],
    credits={"currency": "credits", "cost": Decimal("0.5"), "available": 10**15},
    is_fallback=False,
)


def test_a_usage_record_replays_its_first_outcome_marked_replayed() -> None:
    answer = CheckAnswer(
        customer="acme",
        feature="tokens",
        entity=None,
        has_access=False,
        access_denied_reason=DenialReason.USAGE_LIMIT_EXCEEDED,
        kind=None,
        current_usage=Decimal("0.000001"),
        usage_limit=999_999_999_999,
    )
    first = UsageOutcome(False, False, answer)
    replayed = USAGE_RECORD.replay(USAGE_RECORD.store(first))
    assert replayed == UsageOutcome(False, True, answer)
    assert flat_usage_json(replayed) == flat_usage_json(first).replace(
        b'"replayed":false', b'"replayed":true'
    )


def test_a_record_kept_in_the_wire_form_replays_with_exact_numbers() -> None:
    stored = (
        b'{"applied":true,"replayed":false,"access_denied_reason":null,"balance":12.50,'
        b'"entries":[{"grant":"grant_1","amount":-0.000001}]}'
    )
    assert DEBIT_RECORD.replay(stored) == DebitOutcome(
        applied=True,
        replayed=True,
        access_denied_reason=None,
        balance=Decimal("12.50"),
        entries=[DebitEntry("grant_1", Decimal("-0.000001"))],
    )


def test_a_usage_record_is_positional_and_a_third_of_the_contracts_json() -> None:
    first = UsageOutcome(True, False, FULL_ANSWER)
    stored = USAGE_RECORD.store(first)
    assert stored.startswith(RECORD_V1)
    assert USAGE_RECORD.replay(stored) == UsageOutcome(True, True, FULL_ANSWER)
    assert len(stored) * 2 < len(flat_usage_json(first))


def test_a_usage_record_kept_as_the_contracts_json_still_replays() -> None:
    """Records written before version 1 hold the flat JSON of the answer."""
    first = UsageOutcome(False, False, FULL_ANSWER)
    assert USAGE_RECORD.replay(flat_usage_json(first)) == UsageOutcome(False, True, FULL_ANSWER)


def test_the_positional_layout_of_usage_records_is_the_one_records_hold() -> None:
    """Records already stored give each position a meaning: a change to ``CheckAnswer`` must
    come with a new record version (and this list kept for reading the old one)."""
    assert (*CheckAnswer.__struct_fields__, "recorded") == USAGE_RECORD_V1_FIELDS


DEBIT = DebitOutcome(
    applied=True,
    replayed=False,
    access_denied_reason=None,
    balance=Decimal("12.50"),
    entries=[DebitEntry("grant_1", Decimal("-0.000001")), DebitEntry(None, -(10**15))],
)
REFUSED_DEBIT = DebitOutcome(
    applied=False,
    replayed=False,
    access_denied_reason=DenialReason.INSUFFICIENT_CREDITS,
    balance=0,
    entries=[],
)
GRANT = GrantOutcome(
    id="grant_0123456789abcdef",
    amount=Decimal("1000.000001"),
    remaining=1000,
    category=CreditCategory.PAID,
    cost_basis=Decimal("0.01"),
    priority=3,
    effective_at="2026-12-01T00:00:00Z",
    expires_at=None,
    status=GrantStatus.ACTIVE,
    reason="top-up \u00e9",
    created_at="2026-12-01T00:00:00.000001Z",
    voided_at=None,
    replayed=False,
)
RESERVATION = ReservationOutcome(
    id="res_1",
    granted=True,
    replayed=False,
    access_denied_reason=None,
    expires_at="2026-12-01T00:05:00Z",
    customer="acme",
    feature="tokens",
    entity="agent-7",
    amount=Decimal("2.5"),
)
CONTRACT_JSON = msgspec.json.Encoder(decimal_format="number").encode
LEDGER_OUTCOMES: list[tuple[OutcomeRecord[Any], Any]] = [
    (DEBIT_RECORD, DEBIT),
    (DEBIT_RECORD, REFUSED_DEBIT),
    (GRANT_RECORD, GRANT),
    (RESERVATION_RECORD, RESERVATION),
]


@pytest.mark.parametrize(("record", "first"), LEDGER_OUTCOMES)
def test_a_ledger_writes_record_is_positional_and_replays_exactly(
    record: OutcomeRecord[Any], first: Any
) -> None:
    stored = record.store(first)
    assert stored.startswith(RECORD_V1)
    assert record.replay(stored) == msgspec.structs.replace(first, replayed=True)
    contract_json = CONTRACT_JSON(first)
    assert len(stored) * 3 < len(contract_json) * 2


@pytest.mark.parametrize(("record", "first"), LEDGER_OUTCOMES)
def test_a_ledger_writes_record_kept_as_the_contracts_json_still_replays(
    record: OutcomeRecord[Any], first: Any
) -> None:
    """Records written before version 1 hold the answer's JSON, and are kept forever."""
    contract_json = CONTRACT_JSON(first)
    assert record.replay(contract_json) == msgspec.structs.replace(first, replayed=True)


def test_the_positional_layouts_of_ledger_records_are_the_ones_records_hold() -> None:
    """As for usage records: a change to one of these outcomes takes a new record version."""
    assert DebitOutcome.__struct_fields__ == DEBIT_RECORD_V1_FIELDS
    assert DebitEntry.__struct_fields__ == ("grant", "amount")
    assert GrantOutcome.__struct_fields__ == GRANT_RECORD_V1_FIELDS
    assert ReservationOutcome.__struct_fields__ == RESERVATION_RECORD_V1_FIELDS
