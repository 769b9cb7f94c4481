"""The SDK's answers: the service's own typed answers (``allotment.service``), and the few
that only a client has (a check's age, a buffered report, a page of a list)."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from allotment.domain.resolution import DenialReason
from allotment.service.answers import CheckAnswer

T = TypeVar("T")


class CheckResult(CheckAnswer, frozen=True, kw_only=True):
    """A check result, every field as ``POST /v1/check`` answers it, and ``data_age``: the
    seconds since the data it was decided on was last known current (the change feed was
    live, or the service answered); null for an answer from the fallback."""

    data_age: float | None = 0.0


class UsageResult(CheckAnswer, frozen=True, kw_only=True):
    """``POST /v1/usage`` as the service answered it: ``recorded``, ``replayed`` and the check
    result after the write."""

    recorded: bool
    replayed: bool


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    """What became of a usage report.

    ``buffered``: written to the local buffer, to be delivered with its idempotency key and
    exact payload (the service has not answered yet). ``result``: the service's answer, for an
    enforced report it decided. ``decided_offline``: an enforced report decided by the
    feature's offline policy while the service was unreachable (``Client`` docs)."""

    idempotency_key: str
    recorded: bool
    buffered: bool
    decided_offline: bool = False
    access_denied_reason: DenialReason | None = None
    result: UsageResult | None = None


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a list, oldest first; pass ``next`` as ``after`` for the following page."""

    data: list[T]
    next: str | None
