"""Idempotency records keep outcomes exactly: a replay is the first outcome, typed again."""

from __future__ import annotations

from decimal import Decimal

from allotment.domain.resolution import DenialReason
from allotment.service.answers import CheckAnswer
from allotment.service.outcomes import (
    DEBIT_RECORD,
    USAGE_RECORD,
    DebitEntry,
    DebitOutcome,
    UsageOutcome,
    flat_usage_json,
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
