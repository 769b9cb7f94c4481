"""The SDK's cache: customers' entries (``local.py``) kept in step with the change feed.

One lock orders everything that changes the cache: the feed's thread applying a message, a
caller installing a state it read, a report made or answered. Answers built from an entry are
kept per (customer, feature, entity, requested) for at most a second, and dropped as soon as
anything about their customer changes, so a repeated check is one dictionary look-up
(:meth:`LocalCache.hot`) without taking the lock.

A state read from the service is exact at its ``revision``; the feed may be behind or ahead of
it. Events up to the revision are skipped for the entry (the state counts them); the ones past
it that the feed already handed over are replayed from the recent ones kept here, and an entry
is cached only when those reach back far enough.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.sdk.feed import Message
from allotment.sdk.local import (
    NO_PENDING,
    Entry,
    Pending,
    PendingReports,
    instant_micros,
    micros_of,
)
from allotment.sdk.results import CheckResult
from allotment.service.answers import CheckAnswer, CustomerState

HOT_SECONDS = 1.0  # how long a built answer is reused before its age is worked out again
MAX_HOT = 100_000  # built answers kept at once
SENT_KEYS = 50_000  # idempotency keys remembered, to count a report sent again once
EntryKey = tuple[str, str | None]
HotKey = tuple[str, str, str | None, Hashable]

_decode_data = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal).decode


@dataclass(frozen=True, slots=True)
class _Recent:
    seq: int
    customer: str | None
    kind: str
    data: dict[str, Any]


@dataclass(slots=True)
class Held:
    """An entry, when it was read (this process's clock) and the service's clock then."""

    entry: Entry
    loaded_at: float  # time.time() when the state arrived
    clock_offset: float  # the service's clock minus this one, in seconds, when it was read

    def service_now(self, wall: float) -> int:
        return int((wall + self.clock_offset) * MICROS_PER_UNIT)

    def expired(self, wall: float) -> bool:
        until = self.entry.valid_until
        return until is not None and self.service_now(wall) >= until


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0
    dropped: int = 0
    gaps: int = 0
    resets: int = 0


@dataclass(slots=True)
class _Hot:
    result: CheckResult
    until: float  # time.monotonic()


@dataclass
class LocalCache:
    max_entries: int = 10_000
    recent_size: int = 10_000
    filtered: bool = False  # the feed is narrowed to one customer: revisions have gaps
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._entries: OrderedDict[EntryKey, Held] = OrderedDict()
        self._by_customer: dict[str, set[EntryKey]] = {}
        self._pending: dict[str, PendingReports] = {}
        # Idempotency keys the service recorded, with when it answered (time.time()).
        self._delivered: dict[str, float] = {}
        # The keys of the last reports this client made: one sent again is a retry.
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._recent: deque[_Recent] = deque(maxlen=self.recent_size)
        self._hot: dict[HotKey, _Hot] = {}
        self._hot_keys: dict[str, dict[HotKey, None]] = {}
        self.last_seq: int | None = None
        self.heard_at = 0.0  # time.time() of the feed's last line while it was in step
        # Seconds from the last event's writing on the service to its arrival here (the two
        # hosts' clocks included): the feed's lag. None before the first event.
        self.lag: float | None = None

    # ------------------------------------------------------------ reading

    def hot(self, key: HotKey) -> CheckResult | None:
        """A built answer still fresh for ``key``: no lock, one look-up."""
        found = self._hot.get(key)
        if found is not None and found.until > time.monotonic():
            return found.result
        return None

    def held(self, customer: str, entity: str | None) -> Held | None:
        with self.lock:
            held = self._entries.get((customer, entity))
            if held is not None:
                self._entries.move_to_end((customer, entity))
            return held

    def pending(self, customer: str) -> PendingReports:
        return self._pending.get(customer, NO_PENDING)

    def age(self, held: Held, wall: float) -> float:
        return max(0.0, wall - max(held.loaded_at, self.heard_at))

    def keep_hot(self, key: HotKey, result: CheckResult, until: float) -> None:
        """Keep an answer built under :attr:`lock` from the entry as it still is."""
        if len(self._hot) >= MAX_HOT:
            self._hot.clear()  # answers for many distinct requests: built again as asked
            self._hot_keys.clear()
        self._hot[key] = _Hot(result, until)
        self._hot_keys.setdefault(key[0], {})[key] = None

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[tuple[EntryKey, Held]]:
        with self.lock:
            return list(self._entries.items())

    # ------------------------------------------------------------ installing

    def install(self, state: CustomerState, sent_at: float, received_at: float) -> Held:
        """The state as an entry, cached when it can be kept in step exactly."""
        service_now = instant_micros(state.now) / MICROS_PER_UNIT
        midpoint = (sent_at + received_at) / 2
        held = Held(Entry.of(state), received_at, service_now - midpoint)
        with self.lock:
            self.stats.loads += 1
            self._settle_delivered(state.customer, sent_at)
            self._drop_hot(state.customer)
            if not self._catch_up(held.entry):
                return held
            key = (state.customer, state.entity)
            self._entries[key] = held
            self._entries.move_to_end(key)
            self._by_customer.setdefault(state.customer, set()).add(key)
            while len(self._entries) > self.max_entries:
                old_key, _ = self._entries.popitem(last=False)
                self._forget_key(old_key)
            return held

    def _catch_up(self, entry: Entry) -> bool:
        """Replay the recent events past the entry's revision; False when it cannot be kept."""
        revision = entry.revision
        if revision is None:
            return False
        last = self.last_seq
        if last is None or last <= revision:
            return True  # the feed has handed over nothing the state lacks
        if not self._recent or self._recent[0].seq > revision + 1:
            return False  # some of what it lacks is no longer kept here
        for recent in self._recent:
            if recent.seq <= revision or recent.customer not in (entry.customer, None):
                continue
            if not _apply_to(entry, recent):
                return False
        return True

    # ------------------------------------------------------------ own reports

    def add_pending(self, customer: str, report: Pending) -> bool:
        """Count a report until the feed shows it; False when this client sent its key
        before (sent twice, it is recorded once, even when the first was shown already)."""
        with self.lock:
            key = report.idempotency_key
            if key in self._sent:
                self._sent.move_to_end(key)
                return False
            self._sent[key] = None
            if len(self._sent) > SENT_KEYS:
                self._sent.popitem(last=False)
            self._pending.setdefault(customer, PendingReports()).add(report)
            self._drop_hot(customer)
            return True

    def drop_pending(self, customer: str, idempotency_key: str) -> None:
        """Stop counting a report that was never kept (the buffer refused it)."""
        with self.lock:
            self._sent.pop(idempotency_key, None)
            self._remove_key(customer, idempotency_key)

    def answered(self, customer: str, idempotency_key: str, recorded: bool) -> None:
        """The service answered a report: one it did not record (refused, or a replay of one
        already counted) stops counting; a recorded one counts until the feed shows it."""
        with self.lock:
            if recorded:
                reports = self._pending.get(customer)
                if reports is not None and idempotency_key in reports.by_key:
                    self._delivered[idempotency_key] = time.time()  # not shown by the feed yet
                return
            self._remove_key(customer, idempotency_key)

    def _remove_key(self, customer: str, key: str) -> None:
        reports = self._pending.get(customer)
        if reports is not None and reports.remove_key(key) is not None:
            self._delivered.pop(key, None)
            self._forget_if_empty(customer, reports)

    def _forget_if_empty(self, customer: str, reports: PendingReports) -> None:
        self._drop_hot(customer)
        if not reports:
            del self._pending[customer]

    def _settle_delivered(self, customer: str, read_after: float) -> None:
        """A state read after the service recorded a report counts it (or, read from a
        process that had not applied it yet, the feed's event will): it stops counting as
        pending. Left pending, it would count twice until the feed showed it."""
        reports = self._pending.get(customer)
        if not reports or not self._delivered:
            return
        delivered = self._delivered
        settled = [k for k in reports.by_key if delivered.get(k, read_after) < read_after]
        for key in settled:
            self._remove_key(customer, key)

    # ------------------------------------------------------------ the feed

    def heard(self) -> None:
        self.heard_at = time.time()

    def apply(self, message: Message) -> None:
        """One message of the change feed, in order."""
        with self.lock:
            seq = message.seq
            if message.event == "reset":
                self._reset()
                self.stats.resets += 1
                self.last_seq = seq
                return
            if seq is not None and self.last_seq is None:
                # An id alone (the stream's first block) is the revision it continues after;
                # an event's is the first one it sends.
                self._start_after(seq if message.event is None else seq - 1)
            elif seq is not None and self.last_seq is not None:
                if seq <= self.last_seq:
                    return  # already applied (a resumed stream repeats nothing, but be sure)
                if seq != self.last_seq + 1 and not self.filtered:
                    self.stats.gaps += 1
                    self._reset()
            if message.event is not None and seq is not None:
                data = _decode_data(message.data) if message.data else {}
                written_at = data.get("written_at")
                if isinstance(written_at, str):
                    written = instant_micros(written_at) / MICROS_PER_UNIT
                    self.lag = max(0.0, time.time() - written)
                recent = _Recent(seq, data.get("customer"), message.event, data)
                self._recent.append(recent)
                self._apply(recent)
            if seq is not None:
                self.last_seq = seq

    def _start_after(self, seq: int) -> None:
        """The feed sends the changes after ``seq``: an entry read at an older revision may
        lack changes it will never send (they came before its starting point)."""
        for key, held in list(self._entries.items()):
            revision = held.entry.revision
            if revision is None or revision < seq:
                self._forget_key(key)
                del self._entries[key]
                self.stats.dropped += 1

    def _apply(self, recent: _Recent) -> None:
        customer = recent.customer
        if recent.kind == "catalog.changed" or customer is None:
            self._clear_entries()
            return
        if recent.kind == "usage.recorded":
            data = recent.data
            reports = self._pending.get(customer)
            if reports is not None:
                shape = (data["feature"], data.get("entity"), micros_of(data["amount"]))
                shown = reports.remove_shape(shape)
                if shown is not None:
                    self._delivered.pop(shown.idempotency_key, None)
                    self._forget_if_empty(customer, reports)
        for key in list(self._by_customer.get(customer, ())):
            held = self._entries[key]
            if not _apply_to(held.entry, recent):
                self._forget_key(key)
                del self._entries[key]
                self.stats.dropped += 1
        self._drop_hot(customer)

    def _reset(self) -> None:
        """The feed cannot be followed one change at a time: drop every entry, and the reports
        the service recorded (what the feed would have shown of them is lost)."""
        self._clear_entries()
        self._recent.clear()
        delivered = set(self._delivered)
        for customer, reports in list(self._pending.items()):
            for key in [k for k in reports.by_key if k in delivered]:
                reports.remove_key(key)
            if not reports:
                del self._pending[customer]
        self._delivered.clear()

    def _clear_entries(self) -> None:
        self._entries.clear()
        self._by_customer.clear()
        self._hot.clear()
        self._hot_keys.clear()

    def clear(self) -> None:
        """Drop everything cached, reports included (after a fork: the parent's threads may
        have been midway through a change)."""
        with self.lock:
            self._clear_entries()
            self._recent.clear()
            self._pending.clear()
            self._delivered.clear()
            self.last_seq = None
            self.heard_at = 0.0

    def after_fork(self) -> None:
        self.lock = threading.RLock()
        self.clear()

    def _forget_key(self, key: EntryKey) -> None:
        keys = self._by_customer.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_customer[key[0]]
        self._drop_hot(key[0])

    def _drop_hot(self, customer: str) -> None:
        for key in self._hot_keys.pop(customer, ()):
            self._hot.pop(key, None)


def _apply_to(entry: Entry, recent: _Recent) -> bool:
    """Apply one change to one entry of its customer; False when the entry must be read
    again (it changed in a way only the service can work out)."""
    data = recent.data
    if recent.kind == "usage.recorded":
        at = instant_micros(data["timestamp"])
        path = data.get("entity_path") or ()
        return entry.add_usage(recent.seq, data["feature"], path, micros_of(data["amount"]), at)
    if recent.kind == "credits.changed":
        limit = data.get("overdraft_limit")
        spends = [
            (spend["entity_path"], micros_of(spend["credits"])) for spend in data.get("spends", ())
        ]
        entry.set_pool(
            recent.seq,
            data["currency"],
            micros_of(data["balance"]),
            None if limit is None else micros_of(limit),
            spends,
        )
        until = data.get("valid_until")
        if until is not None:
            entry.valid_before(instant_micros(until))
        return True
    if entry.revision is not None and recent.seq <= entry.revision:
        return True
    if recent.kind == "customer.changed":
        # An entity's own change (its place, its budgets) leaves the answers without an entity
        # as they were; anything else about the customer is the service's to work out.
        own_change = data.get("entity") is not None and data.get("reservation") is None
        return own_change and entry.entity is None
    return False


def answer_of(answer: CheckAnswer, age: float | None, fallback: bool = False) -> CheckResult:
    """The SDK's result for an answer: every field, and the age of its data."""
    fields = msgspec.structs.asdict(answer)
    fields["is_fallback"] = fallback or answer.is_fallback
    return CheckResult(**fields, data_age=age)
