"""What every adapter's repositories share: instants, paths and documents as stored, and pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from allotment.domain.budgets import NO_PATH, EntityPath
from allotment.domain.catalog import Spec, spec_to_document
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.ports import Page

_R = TypeVar("_R")

# A window that never ends is stored with this end, so that the counters' key has no NULL.
NEVER_ENDS = 2**62

decode_document = msgspec.json.Decoder(float_hook=Decimal).decode
encode = msgspec.json.Encoder(decimal_format="number").encode


def instant(micros: int | None) -> datetime | None:
    return None if micros is None else from_epoch_micros(micros)


def micros(at: datetime | None) -> int | None:
    return None if at is None else to_epoch_micros(at)


def spec_json(spec: Spec) -> str:
    return encode(spec_to_document(spec)).decode()


def path_text(path: EntityPath) -> str | None:
    """ "/agent/team/department/": every id between slashes, which ids cannot contain."""
    return "/" + "/".join(path) + "/" if path else None


def path_of(text: str | None) -> EntityPath:
    return tuple(text.strip("/").split("/")) if text else NO_PATH


def window_end(end: datetime | None) -> int:
    return NEVER_ENDS if end is None else to_epoch_micros(end)


def paged(
    rows: list[tuple[Any, ...]], limit: int, build: Callable[[tuple[Any, ...]], _R]
) -> Page[_R]:
    items = rows[:limit]
    next_cursor = str(items[-1][0]) if len(rows) > limit else None
    return Page(items=[build(row) for row in items], next_cursor=next_cursor)
