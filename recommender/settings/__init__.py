"""The one typed settings object. Built in an entry point, passed down; never a module global.

Its fields are declared in two groups, `service` (the running system) and `models` (what it
learns); `docs/configuration.md` is generated from their descriptions (`make docs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from recommender.errors import ConfigurationError
from recommender.settings.models import DEFAULT_EVENT_WEIGHTS, ModelSettings
from recommender.settings.service import ServiceSettings

__all__ = ["DEFAULT_EVENT_WEIGHTS", "Infrastructure", "Settings"]


class Infrastructure(NamedTuple):
    """Where Kafka and Redis are, once resolved (configured, or started embedded)."""

    kafka_url: str
    redis_url: str


class Settings(ServiceSettings, ModelSettings):
    """Every knob of streamrec, read from `STREAMREC_*` environment variables.

    `kafka_url` and `redis_url` are optional: when absent, `streamrec up` and `streamrec demo`
    start an embedded broker and Valkey and pass their URLs to the children they start.
    """

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore")

    def require_secrets(self) -> None:
        """Fail at start-up, with a clear message, when a secret the process needs is missing."""
        key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else ""
        if len(key) < 16:
            raise ConfigurationError(
                "STREAMREC_PSEUDONYM_KEY is not set (or shorter than 16 characters). To reach a "
                "running system, use the key it was started with (`streamrec up` prints it in "
                "its export line): another key finds none of its users. A new deployment needs "
                "a new secret: `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )

    def require_master_keys(self) -> list[str]:
        """The master keys, or a clear start-up error (`crypto.master_cipher` checks each)."""
        raw = self.master_keys.get_secret_value() if self.master_keys else ""
        found = [k.strip() for k in raw.split(",") if k.strip()]
        if not found:
            raise ConfigurationError(
                "STREAMREC_MASTER_KEYS must hold at least one Fernet key to encrypt user data "
                "(`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            )
        return found

    def require_infrastructure(self) -> Infrastructure:
        """The Kafka and Redis URLs, or fail when a process that needs them has none."""
        if not self.kafka_url or not self.redis_url:
            raise ConfigurationError(
                "STREAMREC_KAFKA_URL and STREAMREC_REDIS_URL must be set to run one part alone; "
                "`streamrec up` starts embedded ones when both are unset"
            )
        return Infrastructure(self.kafka_url, self.redis_url)

    @property
    def infra(self) -> Infrastructure:
        """`require_infrastructure`, for code that runs after start-up resolved the URLs."""
        return self.require_infrastructure()

    def as_env(self) -> dict[str, str]:
        """These settings as `STREAMREC_*` variables, for the child processes a runtime starts."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict):
                value = json.dumps(value)
            env[f"STREAMREC_{name.upper()}"] = str(value)
        return env

    @property
    def pseudonym_secret(self) -> bytes:
        self.require_secrets()
        assert self.pseudonym_key is not None
        return self.pseudonym_key.get_secret_value().encode()

    @property
    def models_dir(self) -> Path:
        """Model versions on local disk, when `models_url` names no other place."""
        return self.data_dir / "models"

    @property
    def models_location(self) -> str | Path:
        """Where model versions are kept: `models_url`, or `models_dir`."""
        return self.models_url or self.models_dir
