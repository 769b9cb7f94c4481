"""Idempotency records keep outcomes exactly: a replay is the first outcome, typed again."""

from __future__ import annotations

from decimal import Decimal

from allotment.domain.catalog import Enforcement, FeatureKind
from allotment.domain.periods import ResetPeriod
from allotment.domain.resolution import DenialReason, SourceType
from allotment.service.answers import BudgetView, CheckAnswer, SourceView
from allotment.service.outcomes import (
    DEBIT_RECORD,
    USAGE_RECORD,
    USAGE_RECORD_V1,
    USAGE_RECORD_V1_FIELDS,
    DebitEntry,
    DebitOutcome,
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
    assert stored.startswith(USAGE_RECORD_V1)
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
