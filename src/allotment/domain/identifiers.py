"""Server-made ids: a prefix that names the kind, then 24 random hexadecimal digits."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
