"""The rules of webhook delivery: when a failed attempt is retried, when an endpoint is disabled,
which URLs and addresses a delivery may go to, and the form of endpoint secrets.

Every rule that depends on time takes the instant it is judged at; jitter is passed in, so the
schedule is a pure function of its inputs.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import string
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from allotment.domain.errors import InvalidRequest

MAX_ATTEMPTS = 8
"""Attempts a delivery gets before it is ``failed``."""

RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
"""The wait after failed attempt 1, 2, ... 7 (the Standard Webhooks schedule, 27 h 35 min 5 s in
all), before jitter."""

JITTER_SHARE = 0.2
"""Jitter adds up to this share of each wait. It only lengthens waits, so the attempts always
span at least the schedule's sum, which is more than the 24 hours the contract promises."""

DISABLE_AFTER = timedelta(days=5)
"""An endpoint that has failed every attempt for this long is disabled."""

ATTEMPT_TIMEOUT_SECONDS = 10
"""An attempt that has no answer after this many seconds has failed."""

MAX_URL_LENGTH = 2048

SECRET_PREFIX = "whsec_"

assert len(RETRY_DELAYS) == MAX_ATTEMPTS - 1


def retry_at(attempts_made: int, failed_at: datetime, jitter: float) -> datetime | None:
    """When to try again after attempt ``attempts_made`` failed at ``failed_at``; None once
    every attempt is spent. ``jitter`` in [0, 1) stretches the wait by up to 20 %."""
    if attempts_made < 1:
        raise ValueError(f"attempts_made must be 1 or more, not {attempts_made}")
    # Written so that NaN fails too.
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must lie in [0, 1), not {jitter!r}")
    if attempts_made >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[attempts_made - 1]
    # timedelta * float rounds to whole microseconds, and 1 + 0.2 * jitter >= 1 exactly.
    return failed_at + delay * (1 + JITTER_SHARE * jitter)


def should_disable(failing_since: datetime | None, now: datetime) -> bool:
    """An endpoint failing since ``failing_since`` (None: its last attempt succeeded) is disabled
    at ``now`` once ``DISABLE_AFTER`` has passed, the boundary included."""
    return failing_since is not None and now - failing_since >= DISABLE_AFTER


# ------------------------------------------------------------------ URLs and addresses

# What RFC 3986 lets a URL hold; anything else must be percent-encoded. Refusing the rest (a
# backslash above all) keeps every URL parser reading the same host as this one.
_URL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_HOST_NAME_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "-_")
_HEX_DIGITS = frozenset(string.hexdigits)

# Not globally reachable, yet some Python releases call parts of it global.
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.IPv4Network("192.0.0.0/24")

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, {"field": "url"})


def _is_public(address: _Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return _is_public(embedded)
    elif address in _IETF_PROTOCOL_ASSIGNMENTS:
        return False
    # is_global alone misses multicast, and its ranges differ between Python releases.
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def address_allowed(address: str, allow_private: bool) -> bool:
    """Whether a delivery may connect to ``address``, an IP address as name resolution gives it
    (an IPv6 one may carry a ``%zone``). Anything that is not an IP address is refused."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return allow_private or _is_public(parsed)


def _ends_in_number(host: str) -> bool:
    last = host.removesuffix(".").rpartition(".")[2]
    if last.isdigit():
        return True
    return last[:2] in ("0x", "0X") and all(c in _HEX_DIGITS for c in last[2:])


def _ipv4_part(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if digits == "":
        return 0 if base != 10 else None
    try:
        return int(digits, base) if digits.isalnum() else None
    except ValueError:
        return None


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host ending in a number stands for, read as browsers and
    ``inet_aton`` read it (``127.1``, ``0x7f000001``, ``2130706433``); None when it is none."""
    parts = host.removesuffix(".").split(".")
    if len(parts) > 4:
        return None
    numbers = [_ipv4_part(part) for part in parts]
    value = 0
    for number in numbers[:-1]:
        if number is None or number > 255:
            return None
        value = value * 256 + number
    last = numbers[-1]
    free_bytes = 5 - len(parts)
    if last is None or last >= 256**free_bytes:
        return None
    return ipaddress.IPv4Address(value * 256**free_bytes + last)


def _split_authority(netloc: str) -> tuple[str, str | None]:
    """``host[:port]`` into the host (brackets kept) and the port text, if any."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise _refuse("url has an IPv6 address with no closing ']'.")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _refuse("url's host is not a valid IPv6 address.")
        return host, rest[1:] if rest else None
    host, colon, port = netloc.partition(":")
    return host, port if colon else None


def _check_host_name(host: str, allow_private: bool) -> None:
    name = host.removesuffix(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or any(not 0 < len(label) <= 63 for label in labels)
        or any(c not in _HOST_NAME_CHARACTERS for c in name.replace(".", ""))
    ):
        raise _refuse("url's host is not a valid host name.")
    if not allow_private and labels[-1] == "localhost":
        raise _refuse("url must not point at localhost.")


def check_url(url: str, allow_private: bool) -> str:
    """``url`` unchanged when a webhook endpoint may have it; otherwise an ``InvalidRequest``
    naming the field ``url``. With ``allow_private`` False, an IP literal or ``localhost`` that
    is not publicly reachable is refused too; names are judged again at delivery, by the
    addresses they resolve to (``address_allowed``)."""
    if not isinstance(url, str) or not url:
        raise _refuse("url must be a non-empty string.")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"url must be at most {MAX_URL_LENGTH} characters long.")
    if not all("\x21" <= c <= "\x7e" for c in url):
        raise _refuse(
            "url must be printable ASCII with no spaces or control characters "
            "(percent-encode anything else)."
        )
    unexpected = sorted({c for c in url if c not in _URL_CHARACTERS})
    if unexpected:
        raise _refuse(f"url holds characters a URL may not hold: {' '.join(unexpected)}.")
    try:
        parts = urlsplit(url)
    except ValueError:
        # Only a bracketed host that is no IPv6 address makes an ASCII URL unreadable here.
        raise _refuse("url is not a valid URL: its host is not a valid IPv6 address.") from None
    if parts.scheme not in ("http", "https"):
        raise _refuse("url must start with http:// or https://.")
    if not parts.netloc:
        raise _refuse("url must name a host (http://host/...).")
    if "@" in parts.netloc:
        raise _refuse("url must not hold a user name or password.")
    if "#" in url:
        raise _refuse("url must not have a fragment (#...).")

    host, port = _split_authority(parts.netloc.lower())
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _refuse("url has an invalid port: it must be a number from 1 to 65535.")
    if not host:
        raise _refuse("url must name a host (http://host/...).")

    address: _Address | None
    if host.startswith("["):
        literal = host[1:-1]
        # A zone (%25eth0) only names link-local addresses, which no endpoint may use.
        try:
            address = ipaddress.IPv6Address(literal) if "%" not in literal else None
        except ValueError:
            address = None
        if address is None:
            raise _refuse("url's host is not a valid IPv6 address.")
    elif _ends_in_number(host):
        address = _numeric_ipv4(host)
        if address is None:
            raise _refuse("url's host is not a valid IPv4 address.")
    else:
        _check_host_name(host, allow_private)
        address = None
    if address is not None and not allow_private and not _is_public(address):
        raise _refuse(
            f"url must not point at a private, loopback, link-local or otherwise non-public "
            f"address ({address})."
        )
    return url


# ------------------------------------------------------------------ secrets


def new_secret(random_bytes: bytes) -> str:
    """An endpoint secret: ``whsec_`` and the standard base64 of ``random_bytes`` (pass
    ``secrets.token_bytes(24)``)."""
    if not random_bytes:
        raise ValueError("a secret needs at least one random byte")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64-decoded part after ``whsec_``."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret holds standard base64 after its prefix") from None
    if not key:
        raise ValueError("a webhook secret's key must not be empty")
    return key
