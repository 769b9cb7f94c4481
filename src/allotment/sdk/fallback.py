"""What a check answers for what the cache never saw while the service is unreachable.

A fallback is a default and per-feature values, each a partial check result with
``has_access`` required (the sidecar's ``--fallback FILE`` is this mapping as JSON): ``True``
or ``False`` alone, or an object of check result fields. Answers made from it carry
``"is_fallback": true``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from allotment.sdk.results import CheckResult

FallbackValue = bool | Mapping[str, Any]
# The fields of a check result a fallback may set; the customer, feature and entity are the
# request's, and is_fallback is always true.
_SETTABLE = frozenset(CheckResult.__struct_fields__) - {
    "customer",
    "feature",
    "entity",
    "is_fallback",
    "data_age",
}


@dataclass(frozen=True, slots=True)
class Fallback:
    """``default`` for any feature, ``features`` per feature id."""

    default: Mapping[str, Any] = field(default_factory=lambda: {"has_access": False})
    features: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, value: Fallback | Mapping[str, FallbackValue] | bool | None) -> Fallback:
        """From a ``Fallback``, a bool (the default), or a mapping of feature id to value in
        which the key ``"*"`` names the default."""
        if value is None:
            return cls()
        if isinstance(value, Fallback):
            return value
        if isinstance(value, bool):
            return cls(default=partial(value, "*"))
        features = {name: partial(v, name) for name, v in value.items() if name != "*"}
        default = partial(value["*"], "*") if "*" in value else {"has_access": False}
        return cls(default=default, features=features)

    @classmethod
    def load(cls, path: str | Path) -> Fallback:
        """A fallback file: JSON, feature id (or ``"*"``) → a partial check result."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            value = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error})") from error
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected an object of feature id to check result")
        return cls.of(value)

    def answer(
        self,
        customer: str,
        feature: str,
        entity: str | None,
        requested: Any,
        override: FallbackValue | None = None,
    ) -> CheckResult:
        fields = (
            partial(override, feature)
            if override is not None
            else self.features.get(feature, self.default)
        )
        return msgspec.convert(
            {
                "customer": customer,
                "feature": feature,
                "entity": entity,
                "access_denied_reason": None,
                "kind": None,
                "requested": requested,
                **fields,
                "is_fallback": True,
                "data_age": None,
            },
            CheckResult,
        )


def partial(value: FallbackValue, name: str) -> Mapping[str, Any]:
    """A fallback value as check result fields, checked: ``has_access`` is required."""
    if isinstance(value, bool):
        return {"has_access": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("has_access"), bool):
        raise ValueError(f"fallback for {name!r}: needs has_access (true or false)")
    unknown = set(value) - _SETTABLE
    if unknown:
        raise ValueError(f"fallback for {name!r}: unknown fields {sorted(unknown)}")
    fields = dict(value)
    # Validate now rather than at the first outage.
    try:
        msgspec.convert(
        {"customer": "c", "feature": "f", "entity": None, "access_denied_reason": None,
         "kind": None, **fields},
        CheckResult,
        )  # fmt: skip
    except msgspec.ValidationError as error:
        raise ValueError(f"fallback for {name!r}: {error}") from error
    return fields
