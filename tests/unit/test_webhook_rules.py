"""Webhook rules: the retry schedule, disabling, which URLs and addresses a delivery may reach,
secrets, and the signed headers, checked against a verifier written here from the Standard
Webhooks specification rather than the library that signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from allotment.api.schemas import WebhookEndpointIn
from allotment.domain.errors import InvalidRequest
from allotment.domain.webhook_rules import (
    ATTEMPT_TIMEOUT_SECONDS,
    DISABLE_AFTER,
    MAX_ATTEMPTS,
    MAX_URL_LENGTH,
    RETRY_DELAYS,
    SECRET_PREFIX,
    address_allowed,
    check_url,
    new_secret,
    retry_at,
    secret_key,
    should_disable,
)
from allotment.service.webhook_signing import delivery_headers, signature_header

T0 = datetime(2026, 3, 10, 14, 30, 15, tzinfo=UTC)
ALMOST_ONE = 0.999_999_999

# The pattern the API description gives ``url``: every URL the service accepts must fit it.
_, _described = msgspec.json.schema_components([WebhookEndpointIn])
DESCRIBED_URL = _described["WebhookEndpointIn"]["properties"]["url"]["pattern"]

# ------------------------------------------------------------------ retry schedule


def schedule(jitter: float) -> list[datetime]:
    """The instants of every attempt of one delivery that fails each time at once."""
    attempts = [T0]
    while (after := retry_at(len(attempts), attempts[-1], jitter)) is not None:
        attempts.append(after)
    return attempts


def test_the_schedule_is_the_standard_webhooks_one() -> None:
    assert MAX_ATTEMPTS == 8
    assert (
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=10),
    ) == RETRY_DELAYS
    assert ATTEMPT_TIMEOUT_SECONDS == 10


@pytest.mark.parametrize("jitter", [0.0, 0.5, ALMOST_ONE])
def test_a_delivery_gets_exactly_eight_attempts_over_more_than_a_day(jitter: float) -> None:
    attempts = schedule(jitter)
    assert len(attempts) == 8
    assert attempts[-1] - attempts[0] >= timedelta(hours=27, minutes=35, seconds=5)
    assert attempts[-1] - attempts[0] > timedelta(hours=24)


def test_no_retry_after_the_eighth_attempt() -> None:
    assert retry_at(7, T0, 0.0) == T0 + timedelta(hours=10)
    assert retry_at(8, T0, 0.0) is None
    assert retry_at(9, T0, 0.5) is None


def test_without_jitter_each_wait_is_the_schedule() -> None:
    for made, delay in enumerate(RETRY_DELAYS, start=1):
        assert retry_at(made, T0, 0.0) == T0 + delay


@pytest.mark.parametrize("jitter", [0.0, 0.25, ALMOST_ONE])
def test_waits_never_shrink_from_one_attempt_to_the_next(jitter: float) -> None:
    attempts = schedule(jitter)
    waits = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert waits == sorted(waits)


@pytest.mark.parametrize("jitter", [0.0, 1e-12, 0.3, 0.5, ALMOST_ONE])
def test_jitter_lengthens_a_wait_by_at_most_a_fifth(jitter: float) -> None:
    for made, delay in enumerate(RETRY_DELAYS, start=1):
        at = retry_at(made, T0, jitter)
        assert at is not None
        assert T0 + delay <= at <= T0 + delay * 6 / 5


def test_jitter_is_exact_to_the_microsecond() -> None:
    # Half of 20 % of 2 hours is 12 minutes.
    assert retry_at(4, T0, 0.5) == T0 + timedelta(hours=2, minutes=12)
    assert retry_at(1, T0, 0.5) == T0 + timedelta(seconds=5, microseconds=500_000)


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_jitter_out_of_range_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        retry_at(1, T0, jitter)


def test_attempts_made_starts_at_one() -> None:
    with pytest.raises(ValueError, match="attempts_made"):
        retry_at(0, T0, 0.0)


# ------------------------------------------------------------------ disabling


def test_an_endpoint_is_disabled_after_five_days_of_failures() -> None:
    assert timedelta(days=5) == DISABLE_AFTER
    assert not should_disable(None, T0)
    assert not should_disable(T0, T0)
    assert not should_disable(T0, T0 + timedelta(days=5) - timedelta(microseconds=1))
    assert should_disable(T0, T0 + timedelta(days=5))
    assert should_disable(T0, T0 + timedelta(days=30))


# ------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/allotment",
        "https://hooks.example.com:8443/a/b?x=1&y=%20",
        "http://example.com",
        "HTTPS://Example.COM/Path",
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://[::ffff:8.8.8.8]/hook",
        "https://my_host.example.com./hook",
        "https://intranet/hook",
        "https://example.com/hook?to=ops@example.com",
        "https://example.com/@me",
        "https://a.example?x=@",
    ],
)
def test_public_urls_are_accepted_unchanged(url: str) -> None:
    assert check_url(url, allow_private=False) is url
    assert check_url(url, allow_private=True) is url
    assert re.search(DESCRIBED_URL, url), "the API description's pattern refuses it"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://192.168.1.20/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://192.0.0.8/",
        "http://[::1]/hook",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[2002:7f00:1::1]/",
        "http://localhost/hook",
        "http://LOCALHOST:3000/hook",
        "http://localhost./hook",
        "http://api.localhost/hook",
        # Numeric hosts that resolvers read as IPv4 addresses.
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://10.1.0x1/",
    ],
)
def test_private_destinations_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_url(url, allow_private=False)
    assert refused.value.details == {"field": "url"}
    assert check_url(url, allow_private=True) is url
    assert re.search(DESCRIBED_URL, url), "the API description's pattern refuses it"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "non-empty"),
        ("ftp://example.com/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("https:///hook", "host"),
        ("https:example.com", "host"),
        ("https://:443/hook", "host"),
        ("https://user:pass@example.com/hook", "user name or password"),
        ("https://user@example.com/hook", "user name or password"),
        ("https://@example.com/hook", "user name or password"),
        ("https://example.com/hook#part", "fragment"),
        ("https://example.com/hook#", "fragment"),
        ("https://example.com:99999/hook", "port"),
        ("https://example.com:0/hook", "port"),
        ("https://example.com:http/hook", "port"),
        ("https://example.com:/hook", "port"),
        ("https://example.com:80:80/hook", "port"),
        ("https://[::1]:99999/hook", "port"),
        ("https://" + "a" * MAX_URL_LENGTH, "at most 2048"),
        ("https://example.com/a hook", "spaces"),
        (" https://example.com/hook", "spaces"),
        ("https://example.com/hook\n", "control"),
        ("https://example.com/\x00", "control"),
        ("https://example.com/\t", "control"),
        ("https://exämple.com/hook", "ASCII"),
        ("https://example.com\\@evil.test/", "may not hold"),
        ("https://example.com/<script>", "may not hold"),
        ("https://exa%6dple.com/", "host name"),
        ("https://a..b/", "host name"),
        ("https://" + "a" * 64 + ".com/", "host name"),
        ("https://[::1/hook", "IPv6"),
        ("https://[not-an-address]/", "IPv6"),
        ("https://[fe80::1%25eth0]/", "IPv6"),
        ("https://[::1]x/", "IPv6"),
        ("https://1.2.3.4.5/", "IPv4"),
        ("https://256.1.1.1/", "IPv4"),
        ("https://1.2.3.09/", "IPv4"),
    ],
)
def test_malformed_urls_are_refused_whatever_the_setting(url: str, says: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(InvalidRequest) as refused:
            check_url(url, allow_private=allow_private)
        assert refused.value.details == {"field": "url"}
        assert says in refused.value.message
    if says in ("user name or password", "fragment", "http:// or https://"):
        assert not re.search(DESCRIBED_URL, url), "the description's pattern should refuse it"


def test_a_url_of_the_longest_length_is_accepted() -> None:
    url = "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/"))
    assert len(url) == MAX_URL_LENGTH
    assert check_url(url, allow_private=False) is url
    with pytest.raises(InvalidRequest):
        check_url(url + "a", allow_private=False)


def test_a_url_that_is_no_string_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_url(42, allow_private=True)  # type: ignore[arg-type]
    assert refused.value.details == {"field": "url"}


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address, allow_private=False)
    assert address_allowed(address, allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "100.100.100.100",
        "169.254.169.254",
        "0.0.0.0",
        "239.255.255.250",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1%eth0",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:192.168.0.1",
        "2002:c0a8:1::1",
    ],
)
def test_private_addresses_are_allowed_only_when_private_is(address: str) -> None:
    assert not address_allowed(address, allow_private=False)
    assert address_allowed(address, allow_private=True)


@pytest.mark.parametrize("address", ["", "localhost", "example.com", "127.1", "1.2.3.4:80"])
def test_what_is_no_address_is_never_allowed(address: str) -> None:
    assert not address_allowed(address, allow_private=False)
    assert not address_allowed(address, allow_private=True)


# ------------------------------------------------------------------ secrets

RAW = bytes(range(24))


def test_a_secret_is_the_prefix_and_base64_of_its_bytes() -> None:
    secret = new_secret(RAW)
    assert secret == "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"
    assert secret.startswith(SECRET_PREFIX)
    assert secret_key(secret) == RAW


@pytest.mark.parametrize("raw", [b"\xff" * 24, b"\x00", b"\xfb\xff\xbf" * 8, bytes(range(256))])
def test_secrets_round_trip(raw: bytes) -> None:
    assert secret_key(new_secret(raw)) == raw


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="random byte"):
        new_secret(b"")


@pytest.mark.parametrize(
    "secret", ["AAECAwQF", "whsec_", "whsec_AAE!AwQF", "whsec_AAECAwQ", "whsk_AAECAwQF"]
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        secret_key(secret)


# ------------------------------------------------------------------ signatures


def expected_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks signature, computed from the specification alone."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verifies(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """A receiver's check: any of the space-separated signatures matches, in constant time."""
    expected = expected_signature(
        secret, headers["webhook-id"], headers["webhook-timestamp"], body
    ).encode()
    return any(
        hmac.compare_digest(expected, given.encode())
        for given in headers["webhook-signature"].split(" ")
    )


NEW = new_secret(b"\x01" * 24)
OLD = new_secret(b"\x02" * 24)
OTHER = new_secret(b"\x03" * 24)
BODY = b'{"id":"evt_1","type":"ping","data":{}}'
TS = 1_780_000_000


def test_the_headers_of_a_delivery() -> None:
    headers = delivery_headers([NEW], "evt_1", TS, BODY)
    assert headers == {
        "webhook-id": "evt_1",
        "webhook-timestamp": "1780000000",
        "webhook-signature": expected_signature(NEW, "evt_1", "1780000000", BODY),
        "content-type": "application/json",
        "user-agent": "allotment-webhooks/1",
    }
    assert verifies(NEW, headers, BODY)


def test_a_known_signature() -> None:
    # Computed once by hand with hmac over "evt_1.1780000000." + BODY, key 24 bytes of 0x01.
    key = b"\x01" * 24
    mac = hmac.new(key, b"evt_1.1780000000." + BODY, hashlib.sha256).digest()
    assert signature_header([NEW], "evt_1", TS, BODY) == "v1," + base64.b64encode(mac).decode()


def test_a_rotation_signs_with_both_secrets_in_order() -> None:
    headers = delivery_headers([NEW, OLD], "evt_2", TS, BODY)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2
    assert all(part.startswith("v1,") for part in parts)
    assert parts[0] == expected_signature(NEW, "evt_2", str(TS), BODY)
    assert parts[1] == expected_signature(OLD, "evt_2", str(TS), BODY)
    # A receiver holding either secret accepts; one holding neither does not.
    assert verifies(NEW, headers, BODY)
    assert verifies(OLD, headers, BODY)
    assert not verifies(OTHER, headers, BODY)
    # Each signature belongs to its own secret only.
    only_old = {**headers, "webhook-signature": parts[1]}
    assert verifies(OLD, only_old, BODY)
    assert not verifies(NEW, only_old, BODY)


def test_the_body_bytes_are_signed_exactly() -> None:
    body = '{"name":"Zoë — 株式会社","amount":"1.50"}'.encode()
    headers = delivery_headers([NEW], "evt_3", TS, body)
    assert verifies(NEW, headers, body)
    # The same JSON, re-encoded, is other bytes and fails.
    assert not verifies(NEW, headers, body.replace(b":", b": "))
    assert not verifies(NEW, headers, b'{"name":"Zoe"}')


def test_the_id_and_timestamp_are_signed() -> None:
    headers = delivery_headers([NEW], "evt_4", TS, BODY)
    assert not verifies(NEW, {**headers, "webhook-id": "evt_5"}, BODY)
    assert not verifies(NEW, {**headers, "webhook-timestamp": str(TS + 1)}, BODY)


def test_a_delivery_is_signed_with_at_least_one_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        signature_header([], "evt_1", TS, BODY)


def test_the_standard_webhooks_library_verifies_our_headers() -> None:
    now = int(time.time())
    body = '{"id":"evt_6","type":"customer.created","data":{"name":"Zoë"}}'.encode()
    headers = delivery_headers([NEW, OLD], "evt_6", now, body)
    assert Webhook(NEW).verify(body, headers) == {
        "id": "evt_6",
        "type": "customer.created",
        "data": {"name": "Zoë"},
    }
    assert Webhook(OLD).verify(body, headers) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)
    # The library enforces the 5-minute tolerance the documentation asks receivers for.
    stale = delivery_headers([NEW], "evt_6", now - 600, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(NEW).verify(body, stale)
