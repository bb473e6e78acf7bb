"""Process settings: one object, read from the environment and the command line only when
``Settings.from_env`` is called (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

DEFAULT_DB = "sqlite:///./jitgate.db"
DEFAULT_POLICY = "policy.yaml"


@dataclass(frozen=True)
class Settings:
    policy_path: str = DEFAULT_POLICY
    database_url: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = 8080
    tick_seconds: float = 1.0
    scheduler: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        base = cls(
            policy_path=env.get("JITGATE_POLICY", DEFAULT_POLICY),
            database_url=env.get("JITGATE_DATABASE_URL", DEFAULT_DB),
            tick_seconds=float(env.get("JITGATE_TICK_SECONDS", "1.0")),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **given)  # type: ignore[arg-type]
