"""Events and webhooks through the API, delivered to a local receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Api, define_catalog
from tests.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def wait_for(condition: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("the condition was not met in time")


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, written from the specification alone."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        part.startswith("v1,") and hmac.compare_digest(part[3:], expected)
        for part in headers["webhook-signature"].split()
    )


def register(api: Api, url: str, **extra: Any) -> dict[str, Any]:
    made: dict[str, Any] = api.post("/v1/webhook-endpoints", {"url": url, **extra}, expect=201)
    return made


def test_every_change_arrives_signed_and_in_order(api: Api, receiver: Receiver) -> None:
    define_catalog(api)
    endpoint = register(api, receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    assert "secret" not in api.get(f"/v1/webhook-endpoints/{endpoint['id']}")
    api.put("/v1/customers/acme", {"name": "Acme"}, expect=201)
    api.put("/v1/customers/acme", {"name": "Acme Inc"}, expect=200)
    wait_for(lambda: len(receiver.events()) >= 2)
    events = receiver.events()
    assert [e["type"] for e in events][:2] == ["customer.created", "customer.updated"]
    assert events[0]["seq"] < events[1]["seq"]
    for delivered in receiver.received:
        assert delivered.headers["webhook-id"] == delivered.event["id"]
        assert verify(endpoint["secret"], delivered.headers, delivered.body)
    listed = api.get("/v1/events?customer=acme")["data"]
    assert [e["id"] for e in listed] == [e["id"] for e in events]


def test_a_failing_receiver_gets_every_event_in_order_once_it_recovers(
    api: Api, receiver: Receiver
) -> None:
    define_catalog(api)
    endpoint = register(api, receiver.url)
    receiver.status = 500
    api.put("/v1/customers/acme", {"name": "Acme"}, expect=201)
    wait_for(lambda: receiver.answered)
    for name in ("B", "C"):
        api.put("/v1/customers/acme", {"name": name}, expect=200)
    deliveries = api.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")["data"]
    assert deliveries[0]["status"] == "pending"
    assert deliveries[0]["attempts"] == 1
    assert deliveries[0]["last_status_code"] == 500
    time.sleep(0.5)
    assert len(receiver.answered) == 1  # the retry waits for the service's clock
    receiver.status = 200
    api.advance(10)
    wait_for(lambda: len(receiver.events()) == 3)
    names = [e["data"]["name"] for e in receiver.events()]
    assert names == ["Acme", "B", "C"]


def test_replay_and_ping_and_rotation(api: Api, receiver: Receiver) -> None:
    define_catalog(api)
    endpoint = register(api, receiver.url, events=["customer.created"])
    since = api.now()
    api.put("/v1/customers/acme", {"name": "Acme"}, expect=201)
    api.put("/v1/customers/acme", {"name": "Acme 2"}, expect=200)  # not asked for
    wait_for(lambda: len(receiver.events()) == 1)
    first = receiver.received[0]
    replayed = api.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay", {"since": since}, expect=202
    )
    assert replayed == {"events": 1}
    wait_for(lambda: len(receiver.events()) == 2)
    assert receiver.received[1].headers["webhook-id"] == first.headers["webhook-id"]
    rotated = api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", None, expect=200)
    assert rotated["secret"] != endpoint["secret"]
    api.post(f"/v1/webhook-endpoints/{endpoint['id']}/ping", None, expect=202)
    wait_for(lambda: len(receiver.events()) == 3)
    ping = receiver.received[2]
    assert ping.event["type"] == "ping"
    assert verify(rotated["secret"], ping.headers, ping.body)
    assert verify(endpoint["secret"], ping.headers, ping.body)  # the overlap
    assert len(ping.headers["webhook-signature"].split()) == 2


def test_a_rejected_request_emits_nothing(api: Api) -> None:
    define_catalog(api)
    before = api.get("/v1/events")["data"]
    api.status("POST", "/v1/customers/nobody/subscriptions", {"plan": "no-such-plan"})
    assert api.get("/v1/events")["data"] == before


def test_time_brings_trial_events_before_the_clock_answers(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/customers/acme", {"name": "Acme"}, expect=201)
    plan = api.get("/v1/plans")["data"][0]["id"]
    api.post("/v1/customers/acme/subscriptions", {"plan": plan, "trial": True, "trial_days": 7})
    types = lambda: [e["type"] for e in api.get("/v1/events?customer=acme")["data"]]  # noqa: E731
    assert "trial.started" in types()
    assert "trial.will_end" not in types()
    api.advance(4 * 86400 + 1)
    assert types().count("trial.will_end") == 1
    api.advance(3 * 86400)
    assert types().count("trial.ended") == 1
    api.advance(86400)
    assert types().count("trial.ended") == 1


def test_an_endpoint_failing_for_days_is_disabled_and_says_so(api: Api, receiver: Receiver) -> None:
    define_catalog(api)
    watcher = Receiver()
    try:
        failing = register(api, receiver.url, events=["customer.created"])
        register(api, watcher.url, events=["webhook_endpoint.disabled"])
        receiver.status = 503
        api.put("/v1/customers/acme", {"name": "Acme"}, expect=201)
        for day in range(1, 7):
            wait_for(lambda day=day: len(receiver.answered) >= day)
            if api.get(f"/v1/webhook-endpoints/{failing['id']}")["disabled"]:
                break
            api.advance(86400)
        endpoint = api.get(f"/v1/webhook-endpoints/{failing['id']}")
        assert endpoint["disabled"] is True
        assert len(receiver.answered) == 6  # the attempt 5 days after the first disables it
        wait_for(lambda: watcher.events())
        assert watcher.events()[0]["type"] == "webhook_endpoint.disabled"
        assert watcher.events()[0]["data"]["id"] == failing["id"]
        metrics = api.client.get("/metrics").text
        assert "allotment_webhook_endpoints_disabled_total 1.0" in metrics
        # Enabled again, its waiting delivery goes on.
        receiver.status = 200
        api.request("PATCH", f"/v1/webhook-endpoints/{failing['id']}", {"disabled": False})
        api.advance(86400)
        wait_for(lambda: receiver.events())
    finally:
        watcher.close()


def test_endpoint_routes_refuse_what_they_cannot_use(api: Api) -> None:
    assert api.status("POST", "/v1/webhook-endpoints", {"url": "ftp://x.example"})[0] == 400
    status, _body = api.status(
        "POST", "/v1/webhook-endpoints", {"url": "https://x.example", "events": ["nope"]}
    )
    assert status == 400
    assert api.status("GET", "/v1/webhook-endpoints/we_missing")[0] == 404
    assert api.status("GET", "/v1/webhook-endpoints/bad")[0] == 400
    assert api.status("GET", "/v1/events/evt_missing")[0] == 404
    assert api.status("GET", "/v1/events?type=nope")[0] == 400


def test_an_endpoint_gets_the_events_made_after_it_and_names_what_it_takes(
    api: Api, receiver: Receiver
) -> None:
    define_catalog(api)
    api.put("/v1/customers/before", {"name": "Before"}, expect=201)
    endpoint = register(api, receiver.url)
    assert "customer.created" in endpoint["events"]  # every type, named
    assert "ping" not in endpoint["events"]
    narrow = register(api, receiver.url, events=["trial.ended"])
    assert narrow["events"] == ["trial.ended"]
    api.put("/v1/customers/after", {"name": "After"}, expect=201)
    wait_for(lambda: receiver.events())
    time.sleep(0.3)
    assert [e["customer"] for e in receiver.events()] == ["after"]


def test_patch_changes_what_it_names_and_keeps_the_rest(api: Api) -> None:
    made = register(api, "https://a.example/hooks", events=["trial.ended"], description="one")
    path = f"/v1/webhook-endpoints/{made['id']}"
    changed = api.request("PATCH", path, {"url": "https://b.example/hooks"}, expect=200)
    assert (changed["url"], changed["events"], changed["description"]) == (
        "https://b.example/hooks",
        ["trial.ended"],
        "one",
    )
    changed = api.request("PATCH", path, {"events": None, "description": None}, expect=200)
    assert "customer.created" in changed["events"]
    assert changed["description"] is None
    assert api.status("PATCH", path, {"url": None})[0] == 400
    assert api.status("PATCH", path, {"events": ["nope"]})[0] == 400
    listed = api.get("/v1/webhook-endpoints")["data"]
    assert [e["id"] for e in listed] == [made["id"]]
    assert "secret" not in listed[0]
    api.delete(path, expect=200)
    assert api.status("GET", path)[0] == 404
