"""Settings, read once at start-up and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE = Path("allotment.db")
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    database_path: Path = DEFAULT_DATABASE
    admin_key: str | None = None
    test_clock: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "admin_key": env.get("ALLOTMENT_ADMIN_KEY") or None,
            "test_clock": env.get("ALLOTMENT_TEST_CLOCK", "") in {"1", "true", "yes"},
        }
        if env.get("ALLOTMENT_DB"):
            values["database_path"] = Path(env["ALLOTMENT_DB"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
