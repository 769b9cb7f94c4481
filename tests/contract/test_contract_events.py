"""The contract of events, timers and webhooks: an event stored with the change that carries it,
under that change's revision, and gone with a job that fails; events read by type, customer,
revision and creation instant; marks made once; pruning; timers set, replaced, cancelled and
taken once, earliest first; endpoints and their deliveries, one at a time per (endpoint, group).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from allotment.domain.changes import CustomerChanged, EventRecorded, LoggedChange
from allotment.domain.events import Event, EventType, LoggedEvent
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from allotment.service.ports import Timer, UnitOfWork
from tests.contract.kit import T0, Boom, ContractStore, Recorder, all_pages, at, run

DATA = b'{"a":1}'


def made(
    event_id: str,
    event_type: EventType = EventType.CUSTOMER_CREATED,
    customer: str | None = "acme",
    created_at: datetime = T0,
) -> Event:
    return Event(event_id, event_type, customer, created_at, data=DATA)


def record(store: ContractStore, *events: Event) -> None:
    """One job that records each event with its change."""

    def job(uow: UnitOfWork) -> None:
        for found in events:
            uow.record(EventRecorded(found))

    run(store, job)


def ids(events: Sequence[LoggedEvent]) -> list[str]:
    return [logged.event.id for logged in events]


# ---------------------------------------------------------------- events


def test_a_recorded_event_is_stored_under_its_changes_revision(store: ContractStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder)
    first, second = made("evt_1"), made("evt_2", EventType.CUSTOMER_UPDATED, customer=None)

    def job(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged("acme"))
        uow.record(EventRecorded(first))
        uow.record(EventRecorded(second))

    run(store, job)
    published = {
        item.change.event.id: item.seq
        for item in recorder.items
        if isinstance(item, LoggedChange) and isinstance(item.change, EventRecorded)
    }
    assert published == {"evt_1": 2, "evt_2": 3}
    logged = {
        change.change.event.id: change.seq
        for change in asyncio.run(store.read_log(0, 10))
        if isinstance(change.change, EventRecorded)
    }
    assert logged == published
    assert run(store, lambda uow: uow.events.get("evt_1")) == LoggedEvent(2, first)
    assert run(store, lambda uow: uow.events.get("evt_2")) == LoggedEvent(3, second)
    assert run(store, lambda uow: uow.events.list(None, None, 0, 10)) == [
        LoggedEvent(2, first),
        LoggedEvent(3, second),
    ]
    assert run(store, lambda uow: uow.events.get("evt_nope")) is None


def test_a_failing_job_leaves_no_event(store: ContractStore) -> None:
    record(store, made("evt_1"))

    def fail(uow: UnitOfWork) -> None:
        uow.record(EventRecorded(made("evt_2")))
        raise Boom

    with pytest.raises(Boom):
        run(store, fail)
    assert run(store, lambda uow: uow.events.get("evt_2")) is None
    assert ids(run(store, lambda uow: uow.events.list(None, None, 0, 10))) == ["evt_1"]
    record(store, made("evt_3"))  # the failed job's revision is given to the next
    assert run(store, lambda uow: uow.events.get("evt_3")) == LoggedEvent(2, made("evt_3"))


def test_an_event_id_is_stored_once(store: ContractStore) -> None:
    record(store, made("evt_1"))

    def again(uow: UnitOfWork) -> None:
        uow.record(EventRecorded(made("evt_1", EventType.CUSTOMER_UPDATED)))

    with pytest.raises(Exception):  # noqa: B017, PT011 - each adapter's own integrity error
        run(store, again)
    assert run(store, lambda uow: uow.events.list(None, None, 0, 10)) == [
        LoggedEvent(1, made("evt_1"))
    ]
    assert asyncio.run(store.log_bounds()) == (1, 1)


def _history(store: ContractStore) -> None:
    """Six events over four jobs, revisions 1 to 6."""
    record(store, made("evt_1"), made("evt_2", EventType.CUSTOMER_UPDATED))
    record(store, made("evt_3", customer="beta"))
    record(store, made("evt_4", EventType.PING, customer=None))
    record(
        store,
        made("evt_5", EventType.CUSTOMER_UPDATED, customer="beta"),
        made("evt_6", EventType.CUSTOMER_UPDATED),
    )


def test_events_are_listed_in_revision_order_by_type_and_customer(store: ContractStore) -> None:
    _history(store)

    def listed(event_type: str | None, customer: str | None, after: int = 0) -> list[str]:
        return ids(run(store, lambda uow: uow.events.list(event_type, customer, after, 100)))

    assert listed(None, None) == ["evt_1", "evt_2", "evt_3", "evt_4", "evt_5", "evt_6"]
    assert listed("customer.updated", None) == ["evt_2", "evt_5", "evt_6"]
    assert listed(None, "acme") == ["evt_1", "evt_2", "evt_6"]
    assert listed("customer.updated", "beta") == ["evt_5"]
    assert listed("ping", None) == ["evt_4"]
    assert listed("customer.archived", None) == []
    assert listed(None, "nobody") == []
    assert listed(None, None, after=4) == ["evt_5", "evt_6"]
    assert listed("customer.updated", None, after=2) == ["evt_5", "evt_6"]
    assert listed(None, None, after=6) == []
    seqs = [e.seq for e in run(store, lambda uow: uow.events.list(None, None, 0, 100))]
    assert seqs == [1, 2, 3, 4, 5, 6]


def test_events_are_read_a_page_at_a_time(store: ContractStore) -> None:
    _history(store)
    pages, after = [], 0

    def read(uow: UnitOfWork) -> Sequence[LoggedEvent]:
        return uow.events.list("customer.updated", None, after, 2)

    while page := run(store, read):
        pages.append(ids(page))
        after = page[-1].seq
    assert pages == [["evt_2", "evt_5"], ["evt_6"]]
    assert ids(run(store, lambda uow: uow.events.list(None, "acme", 0, 1))) == ["evt_1"]
    assert run(store, lambda uow: uow.events.list(None, None, 0, 0)) == []


def test_events_are_chosen_by_when_they_were_made(store: ContractStore) -> None:
    # Made out of revision order: what is read comes in revision order all the same.
    record(store, made("evt_1", created_at=at(2)))
    record(store, made("evt_2", created_at=at(0)))
    record(store, made("evt_3", created_at=at(1)))
    record(store, made("evt_4", created_at=at(3)))
    record(store, made("evt_5", created_at=at(1, seconds=0.000001)))

    def between(
        since: datetime, until: datetime | None, after: int = 0, limit: int = 10
    ) -> list[str]:
        return ids(run(store, lambda uow: uow.events.created_between(since, until, after, limit)))

    assert between(at(1), at(3)) == ["evt_1", "evt_3", "evt_5"]  # [since, until)
    assert between(at(1), None) == ["evt_1", "evt_3", "evt_4", "evt_5"]
    assert between(at(0), at(1)) == ["evt_2"]
    assert between(at(1), at(1)) == []
    assert between(at(1), at(3), after=1) == ["evt_3", "evt_5"]
    assert between(at(1), at(3), limit=2) == ["evt_1", "evt_3"]
    assert between(at(4), None) == []


def test_a_mark_is_made_once(store: ContractStore) -> None:
    assert run(store, lambda uow: uow.events.mark_once("threshold:acme:calls:80", T0)) is True
    assert run(store, lambda uow: uow.events.mark_once("threshold:acme:calls:80", at(1))) is False
    assert run(store, lambda uow: uow.events.mark_once("threshold:acme:calls:100", T0)) is True

    def twice(uow: UnitOfWork) -> tuple[bool, bool]:
        return uow.events.mark_once("k", T0), uow.events.mark_once("k", T0)

    assert run(store, twice) == (True, False)


def test_a_failing_jobs_mark_is_undone(store: ContractStore) -> None:
    def fail(uow: UnitOfWork) -> None:
        assert uow.events.mark_once("k", T0)
        raise Boom

    with pytest.raises(Boom):
        run(store, fail)
    assert run(store, lambda uow: uow.events.mark_once("k", T0)) is True


def test_pruning_drops_the_oldest_events_and_marks_made_before_an_instant(
    store: ContractStore,
) -> None:
    record(store, made("evt_1", created_at=at(1)))
    record(store, made("evt_2", created_at=at(0)))
    record(store, made("evt_3", created_at=at(5)))
    record(store, made("evt_4", created_at=at(2)))
    run(store, lambda uow: uow.events.mark_once("old", at(0)))
    run(store, lambda uow: uow.events.mark_once("new", at(5)))

    assert run(store, lambda uow: uow.events.prune(at(3), 2)) == 2  # the oldest two first
    assert ids(run(store, lambda uow: uow.events.list(None, None, 0, 10))) == ["evt_3", "evt_4"]
    assert run(store, lambda uow: uow.events.get("evt_2")) is None
    assert run(store, lambda uow: uow.events.prune(at(3), 10)) == 1
    assert run(store, lambda uow: uow.events.prune(at(3), 10)) == 0
    assert ids(run(store, lambda uow: uow.events.list(None, None, 0, 10))) == ["evt_3"]
    assert run(store, lambda uow: uow.events.mark_once("old", at(6))) is True  # pruned
    assert run(store, lambda uow: uow.events.mark_once("new", at(6))) is False  # kept


def test_a_failing_jobs_prune_is_undone(store: ContractStore) -> None:
    record(store, made("evt_1"), made("evt_2"))

    def fail(uow: UnitOfWork) -> None:
        assert uow.events.prune(at(1), 10) == 2
        raise Boom

    with pytest.raises(Boom):
        run(store, fail)
    assert ids(run(store, lambda uow: uow.events.list(None, None, 0, 10))) == ["evt_1", "evt_2"]
    assert run(store, lambda uow: uow.events.get("evt_1")) == LoggedEvent(1, made("evt_1"))


# ---------------------------------------------------------------- timers


def timer(
    key: str, due_at: datetime, customer: str | None = "acme", payload: bytes = b"{}"
) -> Timer:
    return Timer(key, due_at, customer, payload)


def test_timers_are_taken_once_when_due_earliest_first(store: ContractStore) -> None:
    def setup(uow: UnitOfWork) -> None:
        uow.timers.set(timer("c", at(2)))
        uow.timers.set(timer("b", at(1), customer=None, payload=b'{"x":2}'))
        uow.timers.set(timer("a", at(2)))  # same instant as "c": by key
        uow.timers.set(timer("later", at(9)))

    run(store, setup)
    assert run(store, lambda uow: uow.timers.next_due()) == at(1)
    assert run(store, lambda uow: uow.timers.take_due(at(0), 10)) == []
    assert run(store, lambda uow: uow.timers.take_due(at(2), 2)) == [
        timer("b", at(1), customer=None, payload=b'{"x":2}'),
        timer("a", at(2)),
    ]
    assert run(store, lambda uow: uow.timers.next_due()) == at(2)
    assert run(store, lambda uow: uow.timers.take_due(at(5), 10)) == [timer("c", at(2))]
    assert run(store, lambda uow: uow.timers.take_due(at(5), 10)) == []  # each once
    assert run(store, lambda uow: uow.timers.next_due()) == at(9)
    assert run(store, lambda uow: uow.timers.take_due(at(9), 10)) == [timer("later", at(9))]
    assert run(store, lambda uow: uow.timers.next_due()) is None


def test_setting_a_timer_again_replaces_it_and_cancelling_removes_it(store: ContractStore) -> None:
    run(store, lambda uow: uow.timers.set(timer("trial.ended:sub_1", at(3))))
    replaced = timer("trial.ended:sub_1", at(1), customer="beta", payload=b'{"at":1}')
    run(store, lambda uow: uow.timers.set(replaced))
    run(store, lambda uow: uow.timers.set(timer("other", at(4))))
    assert run(store, lambda uow: uow.timers.next_due()) == at(1)
    assert run(store, lambda uow: uow.timers.take_due(at(3), 10)) == [replaced]

    run(store, lambda uow: uow.timers.cancel("other"))
    run(store, lambda uow: uow.timers.cancel("never-set"))
    assert run(store, lambda uow: uow.timers.next_due()) is None
    assert run(store, lambda uow: uow.timers.take_due(at(9), 10)) == []


def test_a_failing_jobs_timers_are_undone(store: ContractStore) -> None:
    run(store, lambda uow: uow.timers.set(timer("kept", at(1))))

    def fail(uow: UnitOfWork) -> None:
        assert uow.timers.take_due(at(1), 10) == [timer("kept", at(1))]
        uow.timers.set(timer("new", at(0)))
        raise Boom

    with pytest.raises(Boom):
        run(store, fail)
    assert run(store, lambda uow: uow.timers.next_due()) == at(1)
    assert run(store, lambda uow: uow.timers.take_due(at(1), 10)) == [timer("kept", at(1))]


# ---------------------------------------------------------------- webhook endpoints


def endpoint(endpoint_id: str, **fields: Any) -> Endpoint:
    values: dict[str, Any] = {
        "url": f"https://example.com/{endpoint_id}",
        "events": None,
        "description": None,
        "disabled": False,
        "secret": f"whsec_{endpoint_id}",
        "created_at": T0,
        "cursor": 0,
    }
    return Endpoint(endpoint_id, **{**values, **fields})


def save_endpoints(store: ContractStore, *endpoints: Endpoint) -> None:
    def job(uow: UnitOfWork) -> None:
        for found in endpoints:
            uow.webhooks.save_endpoint(found)

    run(store, job)


def test_an_endpoint_round_trips(store: ContractStore) -> None:
    every = endpoint("we_1")
    some = endpoint(
        "we_2",
        events=("customer.created", "credits.low"),
        description="billing",
        disabled=True,
        cursor=41,
        previous_secret="whsec_old",
        previous_until=at(1),
        failing_since=at(0, hours=2),
    )
    save_endpoints(store, every, some)
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_1")) == every
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_2")) == some
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_nope")) is None
    empty = endpoint("we_3", events=())
    run(store, lambda uow: uow.webhooks.save_endpoint(empty))
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_3")) == empty


def test_saving_an_endpoint_again_updates_it_but_keeps_its_creation(store: ContractStore) -> None:
    run(store, lambda uow: uow.webhooks.save_endpoint(endpoint("we_1", events=("ping",))))
    run(store, lambda uow: uow.webhooks.save_endpoint(endpoint("we_2")))
    changed = endpoint(
        "we_1",
        url="https://example.com/moved",
        events=None,
        description="moved",
        disabled=True,
        secret="whsec_new",
        created_at=at(5),
        cursor=7,
        previous_secret="whsec_we_1",
        previous_until=at(2),
        failing_since=at(1),
    )
    run(store, lambda uow: uow.webhooks.save_endpoint(changed))
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_1")) == replace(
        changed, created_at=T0
    )
    cleared = replace(changed, previous_secret=None, previous_until=None, failing_since=None)
    run(store, lambda uow: uow.webhooks.save_endpoint(cleared))
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_1")) == replace(
        cleared, created_at=T0
    )
    listed = run(store, lambda uow: uow.webhooks.list_endpoints(None, 10)).items
    assert [e.id for e in listed] == ["we_1", "we_2"]  # an update keeps its place


def test_endpoints_are_listed_in_creation_order_a_page_at_a_time(store: ContractStore) -> None:
    def create(uow: UnitOfWork) -> None:
        for n in (3, 1, 5, 2, 4):
            uow.webhooks.save_endpoint(endpoint(f"we_{n}", disabled=n % 2 == 0))

    run(store, create)
    items, cursors = all_pages(
        lambda after: run(store, lambda uow: uow.webhooks.list_endpoints(after, 2))
    )
    assert [e.id for e in items] == ["we_3", "we_1", "we_5", "we_2", "we_4"]
    assert len(cursors) == 3
    assert cursors[-1] is None
    assert all(cursor is not None and cursor.isdigit() for cursor in cursors[:-1])
    whole = run(store, lambda uow: uow.webhooks.list_endpoints(None, 5))
    assert (len(whole.items), whole.next_cursor) == (5, None)
    enabled = run(store, lambda uow: uow.webhooks.enabled_endpoints())
    assert [e.id for e in enabled] == ["we_3", "we_1", "we_5"]


def test_no_endpoints(store: ContractStore) -> None:
    page = run(store, lambda uow: uow.webhooks.list_endpoints(None, 10))
    assert (list(page.items), page.next_cursor) == ([], None)
    assert run(store, lambda uow: uow.webhooks.enabled_endpoints()) == []


# ---------------------------------------------------------------- deliveries


def delivery(
    delivery_id: str,
    endpoint_id: str = "we_1",
    group: str = "c:acme",
    next_attempt_at: datetime | None = T0,
    event_seq: int = 1,
) -> Delivery:
    return Delivery(
        id=delivery_id,
        endpoint=endpoint_id,
        event_seq=event_seq,
        event_id=f"evt_{event_seq}",
        group=group,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=next_attempt_at,
        created_at=T0,
    )


def add(store: ContractStore, *deliveries: Delivery) -> dict[str, Delivery]:
    """Add the deliveries in one job; each as stored, by id."""

    def job(uow: UnitOfWork) -> dict[str, Delivery]:
        for endpoint_id in dict.fromkeys(d.endpoint for d in deliveries):
            if uow.webhooks.get_endpoint(endpoint_id) is None:  # only enabled ones are due
                uow.webhooks.save_endpoint(endpoint(endpoint_id))
        uow.webhooks.add_deliveries(deliveries)
        stored = {d.id: uow.webhooks.get_delivery(d.id) for d in deliveries}
        return {key: found for key, found in stored.items() if found is not None}

    return run(store, job)


def save(store: ContractStore, *deliveries: Delivery) -> None:
    def job(uow: UnitOfWork) -> None:
        for found in deliveries:
            uow.webhooks.save_delivery(found)

    run(store, job)


def due(store: ContractStore, now: datetime, limit: int = 100) -> list[str]:
    return [d.id for d in run(store, lambda uow: uow.webhooks.due_deliveries(now, limit))]


def test_a_delivery_round_trips_with_the_seq_it_was_given(store: ContractStore) -> None:
    run(store, lambda uow: uow.webhooks.save_endpoint(endpoint("we_1")))
    sent = [delivery("whd_1"), delivery("whd_2", group="", event_seq=2), delivery("whd_3")]
    stored = add(store, *sent)
    seqs = [stored[d.id].seq for d in sent]
    assert seqs == sorted(set(seqs))
    assert seqs[0] > 0
    # The third is second in its group: it waits, with no instant, for the first.
    expected = [*sent[:2], replace(sent[2], next_attempt_at=None)]
    assert [stored[d.id] for d in sent] == [
        replace(d, seq=seq) for d, seq in zip(expected, seqs, strict=True)
    ]
    later = add(store, delivery("whd_4"))
    assert later["whd_4"].seq > seqs[-1]


def test_a_group_s_next_delivery_becomes_due_when_the_one_ahead_ends(
    store: ContractStore,
) -> None:
    stored = add(
        store,
        delivery("d1", next_attempt_at=at(0)),
        delivery("d2", next_attempt_at=at(1)),
        delivery("d3", next_attempt_at=at(2)),
    )
    assert [stored[n].next_attempt_at for n in ("d1", "d2", "d3")] == [at(0), None, None]
    retried = stored["d1"].attempt_failed(500, "answered 500", at(60))
    save(store, retried)  # still pending: the others keep waiting
    assert due(store, at(59)) == []
    save(store, retried.attempt_failed(500, "answered 500", None))  # failed: d2's turn
    following = run(store, lambda uow: uow.webhooks.get_delivery("d2"))
    assert following is not None
    assert following.next_attempt_at == following.created_at
    assert due(store, at(59)) == ["d2"]
    added = add(store, delivery("d4", group="c:other"))  # a group of its own: due at once
    assert added["d4"].next_attempt_at == T0
    assert run(store, lambda uow: uow.webhooks.get_delivery("whd_nope")) is None
    run(store, lambda uow: uow.webhooks.add_deliveries([]))


def test_a_delivery_id_is_stored_once(store: ContractStore) -> None:
    add(store, delivery("whd_1"))
    with pytest.raises(Exception):  # noqa: B017, PT011 - each adapter's own integrity error
        add(store, delivery("whd_2"), delivery("whd_1", endpoint_id="we_2"))
    assert run(store, lambda uow: uow.webhooks.get_delivery("whd_2")) is None
    assert due(store, at(1)) == ["whd_1"]


def test_saving_a_delivery_changes_its_status_attempts_and_next_attempt(
    store: ContractStore,
) -> None:
    first = add(store, delivery("whd_1"), delivery("whd_2"))
    failed_once = first["whd_1"].attempt_failed(503, "service unavailable", at(0, hours=1))
    save(store, failed_once)
    assert run(store, lambda uow: uow.webhooks.get_delivery("whd_1")) == failed_once
    succeeded = failed_once.succeeded(200)
    save(store, succeeded)
    found = run(store, lambda uow: uow.webhooks.get_delivery("whd_1"))
    assert found == succeeded
    assert found is not None
    assert (found.status, found.attempts, found.next_attempt_at) == (
        DeliveryStatus.SUCCEEDED,
        2,
        None,
    )
    assert (found.last_status_code, found.last_error) == (200, None)
    gave_up = first["whd_2"].attempt_failed(None, "connection refused", None)
    save(store, gave_up)
    assert run(store, lambda uow: uow.webhooks.get_delivery("whd_2")) == gave_up
    assert gave_up.status is DeliveryStatus.FAILED


def test_only_the_first_pending_delivery_of_a_group_is_due(store: ContractStore) -> None:
    stored = add(
        store,
        delivery("a1", next_attempt_at=at(0, hours=1)),
        delivery("a2", next_attempt_at=at(0)),  # due first, but waits behind a1
        delivery("a3", next_attempt_at=at(0)),
        delivery("b1", group="c:beta", next_attempt_at=at(0, hours=2)),
        delivery("n1", group="", next_attempt_at=at(0, hours=3)),
        delivery("p1", group="ping:evt_9", next_attempt_at=at(0, hours=3)),
        delivery("o1", endpoint_id="we_2", next_attempt_at=at(0)),  # same group, other endpoint
        delivery("later", group="c:gamma", next_attempt_at=at(2)),
    )
    now = at(1)
    # By next attempt, then seq: o1 (T0), a1 (1 h), b1 (2 h), n1 and p1 (3 h, in seq order).
    assert due(store, now) == ["o1", "a1", "b1", "n1", "p1"]
    assert due(store, now, limit=2) == ["o1", "a1"]
    assert due(store, at(0)) == ["o1"]

    save(store, stored["a1"].succeeded(200))  # its group moves on
    assert due(store, now) == ["a2", "o1", "b1", "n1", "p1"]
    save(store, stored["a2"].attempt_failed(500, "boom", None))  # failed: the next goes
    assert due(store, now) == ["a3", "o1", "b1", "n1", "p1"]
    # A head retried later holds its group back until then.
    save(store, stored["a3"].attempt_failed(500, "boom", at(3)))
    save(store, stored["o1"].attempt_failed(500, "boom", at(0, hours=4)))
    assert due(store, now) == ["b1", "n1", "p1", "o1"]
    assert due(store, at(3)) == ["b1", "n1", "p1", "o1", "later", "a3"]


def test_a_later_delivery_waits_behind_an_earlier_one_not_yet_due(store: ContractStore) -> None:
    add(
        store,
        delivery("d1", next_attempt_at=at(5)),
        delivery("d2", next_attempt_at=at(0)),
        delivery("e1", endpoint_id="we_2", group="c:acme", next_attempt_at=at(0)),
    )
    assert due(store, at(1)) == ["e1"]
    assert due(store, at(5)) == ["e1", "d1"]


def test_the_newest_seq_is_the_last_event_stored(store: ContractStore) -> None:
    assert run(store, lambda uow: uow.events.newest_seq()) == 0
    record(store, made("evt_1"))
    run(store, lambda uow: uow.record(CustomerChanged("acme")))  # a change that is no event
    record(store, made("evt_2"))
    newest = run(store, lambda uow: uow.events.get("evt_2"))
    assert newest is not None
    assert run(store, lambda uow: uow.events.newest_seq()) == newest.seq == 3


def test_disabled_and_busy_endpoints_leave_the_page_to_the_others(store: ContractStore) -> None:
    # Many due deliveries of one endpoint come first; a page of 2 must still reach the rest.
    add(
        store,
        *(delivery(f"d{n}", group=f"c:{n}", next_attempt_at=at(0)) for n in range(5)),
        delivery("e1", endpoint_id="we_2", next_attempt_at=at(1)),
        delivery("f1", endpoint_id="we_3", next_attempt_at=at(2)),
    )
    assert due(store, at(5), limit=2) == ["d0", "d1"]
    taken = run(store, lambda uow: uow.webhooks.due_deliveries(at(5), 2, ["we_1"]))
    assert [d.id for d in taken] == ["e1", "f1"]
    run(store, lambda uow: uow.webhooks.save_endpoint(endpoint("we_1", disabled=True)))
    assert due(store, at(5), limit=2) == ["e1", "f1"]


def test_prune_drops_finished_deliveries_and_keeps_pending_ones(store: ContractStore) -> None:
    stored = add(store, delivery("old"), delivery("waiting", group="c:other"))
    save(store, stored["old"].succeeded(200))
    assert run(store, lambda uow: uow.events.prune(at(3600), 100)) == 0  # no events to drop
    left = run(store, lambda uow: uow.webhooks.list_deliveries("we_1", None, None, 10))
    assert [d.id for d in left.items] == ["waiting"]


def test_deliveries_are_listed_by_endpoint_and_status_a_page_at_a_time(
    store: ContractStore,
) -> None:
    stored = add(
        store,
        *[delivery(f"whd_{n}", event_seq=n) for n in range(1, 6)],
        delivery("other", endpoint_id="we_2"),
    )
    save(store, stored["whd_2"].succeeded(200), stored["whd_4"].succeeded(204))

    def listed(status: DeliveryStatus | None, size: int) -> tuple[list[str], list[str | None]]:
        items, cursors = all_pages(
            lambda after: run(
                store, lambda uow: uow.webhooks.list_deliveries("we_1", status, after, size)
            )
        )
        return [d.id for d in items], cursors

    every, cursors = listed(None, 2)
    assert every == ["whd_1", "whd_2", "whd_3", "whd_4", "whd_5"]
    assert len(cursors) == 3
    assert cursors[-1] is None
    assert listed(DeliveryStatus.PENDING, 2)[0] == ["whd_1", "whd_3", "whd_5"]
    assert listed(DeliveryStatus.SUCCEEDED, 1)[0] == ["whd_2", "whd_4"]
    assert listed(DeliveryStatus.FAILED, 10) == ([], [None])
    first = run(store, lambda uow: uow.webhooks.list_deliveries("we_1", None, None, 2))
    assert first.next_cursor == str(stored["whd_2"].seq)
    assert [d.id for d in first.items] == ["whd_1", "whd_2"]
    assert [d.seq for d in first.items] == [stored["whd_1"].seq, stored["whd_2"].seq]
    other = run(store, lambda uow: uow.webhooks.list_deliveries("we_2", None, None, 10))
    assert [d.id for d in other.items] == ["other"]


def test_deleting_an_endpoint_removes_its_deliveries(store: ContractStore) -> None:
    save_endpoints(store, endpoint("we_1"), endpoint("we_2"))
    add(store, delivery("d1"), delivery("d2"), delivery("o1", endpoint_id="we_2"))
    assert run(store, lambda uow: uow.webhooks.delete_endpoint("we_1")) is True
    assert run(store, lambda uow: uow.webhooks.delete_endpoint("we_1")) is False
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_1")) is None
    assert run(store, lambda uow: uow.webhooks.get_delivery("d1")) is None
    page = run(store, lambda uow: uow.webhooks.list_deliveries("we_1", None, None, 10))
    assert list(page.items) == []
    assert due(store, at(1)) == ["o1"]
    assert [e.id for e in run(store, lambda uow: uow.webhooks.enabled_endpoints())] == ["we_2"]
    assert run(store, lambda uow: uow.webhooks.get_delivery("o1")) is not None


def test_a_failing_jobs_endpoints_and_deliveries_are_undone(store: ContractStore) -> None:
    run(store, lambda uow: uow.webhooks.save_endpoint(endpoint("we_1")))
    stored = add(store, delivery("d1"))

    def fail(uow: UnitOfWork) -> None:
        uow.webhooks.save_endpoint(endpoint("we_1", disabled=True, cursor=9))
        uow.webhooks.save_endpoint(endpoint("we_2"))
        uow.webhooks.add_deliveries([delivery("d2", group="c:beta")])
        uow.webhooks.save_delivery(stored["d1"].succeeded(200))
        raise Boom

    with pytest.raises(Boom):
        run(store, fail)
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_1")) == endpoint("we_1")
    assert run(store, lambda uow: uow.webhooks.get_endpoint("we_2")) is None
    assert run(store, lambda uow: uow.webhooks.get_delivery("d1")) == stored["d1"]
    assert due(store, at(1)) == ["d1"]

    def delete_then_fail(uow: UnitOfWork) -> None:
        assert uow.webhooks.delete_endpoint("we_1")
        raise Boom

    with pytest.raises(Boom):
        run(store, delete_then_fail)
    assert run(store, lambda uow: uow.webhooks.get_delivery("d1")) == stored["d1"]
    assert [e.id for e in run(store, lambda uow: uow.webhooks.list_endpoints(None, 10)).items] == [
        "we_1"
    ]
