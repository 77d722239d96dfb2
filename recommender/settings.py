"""The one typed settings object. Built in an entry point, passed down; never a module global."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.errors import ConfigurationError
from recommender.types import EVENT_TYPES

#: Confidence weight of one event of each type, before a rating scales it.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "cart": 4.0,
    "purchase": 8.0,
    "rating": 5.0,
    "review": 3.0,
}


class Infrastructure(NamedTuple):
    """Where Kafka and Redis are, once resolved (configured, or started embedded)."""

    kafka_url: str
    redis_url: str


class Settings(BaseSettings):
    """Every knob of streamrec, read from `STREAMREC_*` environment variables.

    `kafka_url` and `redis_url` are optional: when absent, `streamrec up` and `streamrec demo`
    start an embedded broker and Valkey and pass their URLs to the children they start.
    """

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore")

    # Infrastructure
    kafka_url: str | None = Field(None, description="Kafka bootstrap, e.g. kafka://host:9092")
    redis_url: str | None = Field(None, description="Redis URL, e.g. redis://host:6379/0")
    data_dir: Path = Field(Path(".streamrec"), description="Model artifacts and local state")

    # Topics
    topic_events: str = "events"
    topic_content: str = "content"
    topic_metrics: str = "metrics"
    topic_dead_letter: str = "dead-letter"
    topic_partitions: int = Field(4, ge=1, le=1024)

    # Worker
    worker_id: str = Field("streamrec-worker", description="Faust app id = consumer group")
    worker_session_timeout_s: float = Field(
        6.0,
        ge=1,
        le=300,
        description="Consumer group session timeout: how soon a dead worker's partitions move "
        "(Kafka brokers refuse less than group.min.session.timeout.ms, 6 s by default)",
    )
    batch_size: int = Field(
        2000, ge=1, le=10_000, description="Most events the worker applies and folds in at once"
    )
    consumer_fetch_max_wait_ms: int = Field(
        10, ge=1, le=5000, description="How long the broker may hold an empty fetch"
    )

    # Attribution and A/B
    attribution_window_s: int = Field(
        1800, ge=10, le=7 * 86400, description="An outcome counts for a list served this recently"
    )
    attribution_hit_k: int = Field(
        10, ge=1, le=1000, description="A list is a hit when one of its first k items is"
    )
    ab_challenger_share: float = Field(
        0.0, ge=0, le=0.5, description="Share of users served the CF challenger (0: no split)"
    )

    # Monitoring
    monitor: bool = Field(
        True, description="Let the monitor request refits, promote and roll back on evidence"
    )
    monitor_min_lists: int = Field(
        200, ge=10, description="Lists each side must have served before a test is decided"
    )
    monitor_z: float = Field(2.576, gt=0, description="z a one-sided test must reach")
    monitor_drift_drop: float = Field(
        0.2, gt=0, lt=1, description="Fall in hit rate that makes an ADWIN cut a drift"
    )

    # Metrics
    metrics_publish: bool = Field(
        True, description="Publish one record per metric per second to the metrics topic"
    )
    metrics_window_ms: int = Field(1000, ge=100, le=60_000, description="A metric record's window")
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Serve the worker's Prometheus metrics on this port"
    )
    worker_metrics_host: str = Field("127.0.0.1", description="Where that endpoint listens")

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    max_k: int = Field(100, ge=1, le=1000)
    api_docs: bool = Field(False, description="Serve /docs and /openapi.json")
    api_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Larger request bodies are refused with 413"
    )
    api_rate_per_s: float = Field(100.0, gt=0, description="Requests per second per API key")
    api_rate_burst: int = Field(200, ge=1, description="Token-bucket size per API key")
    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes sharing the API port (uvicorn's workers); each is a replica",
    )
    api_model_check_s: float = Field(
        0.5, ge=0, description="How often the API checks which model version to serve"
    )
    api_title_cache_s: float = Field(60.0, ge=0, description="How long the API caches titles")
    instance_id: str | None = Field(
        None,
        max_length=64,
        description="Names this process in health answers; a random one when unset",
    )
    api_key_cache_s: float = Field(
        5.0, ge=0, description="A verified key is trusted this long (a revocation's delay)"
    )

    # Secrets: no defaults. The embedded runtime generates throwaway ones for its own run.
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key that turns user ids into the pseudonyms used in Redis keys"
    )

    master_keys: SecretStr | None = Field(
        None,
        description="Comma-separated Fernet keys that wrap users' data keys; the first encrypts",
    )

    # Features
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    rating_scale: float = Field(5.0, gt=0, description="A rating's value is divided by this")
    recent_items: int = Field(50, ge=1, le=1000, description="Recent interactions kept per user")
    user_ttl_s: int = Field(90 * 86400, ge=60, description="Idle users' features expire after")
    dedupe_ttl_s: int = Field(7 * 86400, ge=60, description="Window in which replays are dropped")

    # Collaborative filtering
    als_factors: int = Field(64, ge=2, le=1024)
    als_regularization: float = Field(10.0, ge=0)
    als_iterations: int = Field(15, ge=1, le=200)
    als_alpha: float = Field(0.25, gt=0, description="Confidence = 1 + alpha * weight")
    als_min_events: int = Field(1000, ge=1, description="Events needed before the first fit")
    knn_neighbours: int = Field(
        100, ge=0, le=1000, description="Nearest items kept per item at each refit (0: none)"
    )
    serve_knn_weight: float = Field(
        0.5, ge=0, description="Weight of the recent items' neighbours against the ALS score"
    )
    serve_candidates: int = Field(
        100,
        ge=0,
        le=1000,
        description="Candidates cached per user for requests of up to this many items "
        "(0: every request scores the catalogue)",
    )
    serve_recent_items: int = Field(
        10, ge=0, le=50, description="Recent items whose neighbours are blended in"
    )
    serve_recent_decay: float = Field(
        0.8, gt=0, le=1, description="The r-th most recent item counts decay**r"
    )
    serve_new_item_slots: int = Field(
        1, ge=0, le=10, description="Places in a list kept for items newer than the fit (0: none)"
    )
    serve_new_item_within: int = Field(
        100,
        ge=1,
        description="A new item takes such a place only among the user's this many closest items",
    )
    refit_growth: float = Field(0.2, gt=0, description="Refit when events grew by this fraction")
    refit_idle_s: float = Field(2.0, gt=0, description="Refit when the stream is quiet this long")
    refit_min_interval_s: float = Field(
        10.0, ge=0, description="No growth-triggered refit sooner than this after the last"
    )
    refit_interval_s: float = Field(300.0, gt=0, description="Refit at least this often")
    quality_gate_margin: float = Field(
        0.01, ge=0, le=1, description="A refit whose holdout NDCG@10 trails by more is held back"
    )
    quality_gate_min_users: int = Field(
        20, ge=1, description="Fewer users active since the served fit: no gate, refit served"
    )

    # Content models (text, sentiment, image)
    content_models: bool = Field(
        True, description="Train the content models from the stream and use their predictions"
    )
    review_positive_weight: float = Field(
        8.0,
        ge=0,
        description="A review's weight is this x max(0, 2p - 1), p its probability of being "
        "positive, once a sentiment model serves",
    )
    predicted_category_min_p: float = Field(
        0.3, gt=0, le=1, description="Predicted categories kept for an item: at least this sure"
    )
    content_min_examples: int = Field(
        200, ge=10, description="Labelled examples a content model waits for before its first fit"
    )
    content_first_fit_epochs: int = Field(5, ge=1, le=50, description="Epochs of a first fit")
    content_publish_every: int = Field(
        1000, ge=10, description="Examples learned between two versions of a content model"
    )
    content_replay_size: int = Field(
        5000, ge=100, description="Examples a content model replays from (so it does not forget)"
    )
    content_holdout_size: int = Field(
        1000, ge=50, description="Examples kept out of training to judge each version"
    )
    content_batch_size: int = Field(32, ge=1, le=1024, description="New examples per step")

    @field_validator("event_weights")
    @classmethod
    def _weights_known(cls, value: dict[str, float]) -> dict[str, float]:
        missing = set(EVENT_TYPES) - set(value)
        if missing:
            raise ValueError(f"event_weights lacks a weight for {sorted(missing)}")
        if any(w < 0 for w in value.values()):
            raise ValueError("event_weights must not be negative")
        return value

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
        return self.data_dir / "models"
