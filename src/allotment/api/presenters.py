"""Outcomes as the contract's JSON: the request path's answers, encoded here. Every other route
hands its service's typed answer to ``api.http.json_response`` or ``page_response``, which encode
it with the same encoder settings."""

from __future__ import annotations

import msgspec

from allotment.service.answers import CheckAnswer
from allotment.service.outcomes import (
    DebitOutcome,
    GrantOutcome,
    ReservationOutcome,
    UsageOutcome,
    flat_usage_json,
)

_encode = msgspec.json.Encoder(decimal_format="number").encode


def check_json(answer: CheckAnswer) -> bytes:
    return _encode(answer)


def usage_json(outcome: UsageOutcome) -> bytes:
    """``recorded`` and ``replayed``, then the check result's fields, in one object."""
    return flat_usage_json(outcome)


def write_json(outcome: DebitOutcome | ReservationOutcome | GrantOutcome) -> bytes:
    return _encode(outcome)
