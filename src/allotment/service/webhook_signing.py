"""The headers of a webhook delivery, signed as the Standard Webhooks specification says."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

from allotment.domain.webhook_rules import secret_key

USER_AGENT = "allotment-webhooks/1"


def signature_header(secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, in order, separated by
    spaces, so a receiver holding either secret of a rotation can verify."""
    if not secrets:
        raise ValueError("a delivery is signed with at least one secret")
    at = datetime.fromtimestamp(timestamp, UTC)
    # The key is decoded here, strictly, rather than by the library, which skips bad characters.
    return " ".join(Webhook(secret_key(secret)).sign(webhook_id, at, body) for secret in secrets)


def delivery_headers(
    secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of one attempt; ``timestamp`` is the sender's wall clock, in Unix seconds."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, webhook_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
