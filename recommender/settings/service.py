"""The settings of the running system: where Kafka and Redis are, its topics, the worker,
attribution and A/B, monitoring, metrics, the API and the secrets. Part of
`recommender.settings.Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class ServiceSettings(BaseSettings):
    # Infrastructure
    kafka_url: str | None = Field(
        None,
        description=(
            "Kafka bootstrap, e.g. `kafka://host:9092`; unset (with the Redis URL) means embedded"
        ),
    )
    redis_url: str | None = Field(
        None,
        description=(
            "Redis URL, e.g. `redis://host:6379/0`; unset means embedded. An ACL user and "
            "password go in it (`redis://user:password@host:6379/0`), TLS by `rediss://` (a CA "
            "file as `?ssl_ca_certs=/path/ca.pem`). A Redis or Valkey Cluster: "
            "`redis+cluster://host:6379` (any node; `rediss+cluster://` with TLS)"
        ),
    )
    redis_cluster_shards: int = Field(
        16,
        ge=1,
        le=1024,
        description=(
            "on a cluster, shards of what every event touches (popularity, the clock, counters, "
            "active users), each in a slot of its own, merged on read"
        ),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every streamrec Kafka client talks to the brokers"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="the SASL mechanism, with a SASL protocol"
    )
    kafka_sasl_username: str | None = Field(None, description="the SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, description="the SASL user's password")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="CA certificates to check the brokers by, with TLS (default: the system's)",
    )
    data_dir: Path = Field(
        Path(".streamrec"),
        description=(
            "model artifacts (shared by worker and API) and the worker's Faust directory "
            "(`faust/`); the only place a streamrec process writes"
        ),
    )

    models_url: str | None = Field(
        None,
        description=(
            "where model versions are kept, shared by every worker and API replica: "
            "`s3://bucket/prefix` (or any fsspec URL) in a fleet; default `data_dir/models` "
            "on local disk. An object store is read through a cache in `data_dir/models-cache`"
        ),
    )
    models_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'JSON options for the models\' filesystem (for S3: `{"endpoint_url": ...}`; '
            "credentials from the AWS chain, an instance role rather than keys here)"
        ),
    )

    # Topics
    topic_events: str = Field("events", description="user events topic")
    topic_content: str = Field("content", description="content items topic")
    topic_metrics: str = Field("metrics", description="metrics topic (see Monitoring)")
    topic_dead_letter: str = Field("dead-letter", description="rejected records with reasons")
    topic_partitions: int = Field(
        4, ge=1, le=1024, description="partitions per topic (the unit of worker parallelism)"
    )

    # Worker
    worker_id: str = Field(
        "streamrec-worker", description="Faust app id, which is the consumer group"
    )
    worker_session_timeout_s: float = Field(
        6.0,
        ge=1,
        le=300,
        description=(
            "consumer group session timeout: how soon a killed worker's partitions move "
            "to a new member; Apache Kafka refuses less than its "
            "`group.min.session.timeout.ms` (6 s by default); with the embedded broker, 2"
        ),
    )
    batch_size: int = Field(
        2000,
        ge=1,
        le=10_000,
        description=(
            "most events the worker applies and folds in at once (the apply script runs "
            "500 per call)"
        ),
    )
    consumer_fetch_max_wait_ms: int = Field(
        10,
        ge=1,
        le=5000,
        description=(
            "how long the broker may hold an empty fetch; with Faust's fixed 1,500 the "
            "embedded broker held every fetch that long, which dominated event-to-feature"
            " latency"
        ),
    )

    # Attribution and A/B
    attribution_window_s: int = Field(
        1800,
        ge=10,
        le=7 * 86400,
        description=(
            "an outcome counts for a list served this recently (impressions expire after it)"
        ),
    )
    attribution_hit_k: int = Field(
        10,
        ge=1,
        le=1000,
        description="a list is a hit when an outcome lands on one of its first k items",
    )
    ab_challenger_share: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description=(
            "share of users (by a stable hash of their pseudonym) served the CF "
            "challenger while there is one; 0 to 0.5"
        ),
    )

    # Monitoring
    monitor: bool = Field(
        True,
        description=(
            "run the monitor: it asks for refits, promotes a challenger that wins the A/B"
            " test and rolls back a promotion that does worse (false: none of it)"
        ),
    )
    monitor_min_lists: int = Field(
        200, ge=10, description="lists each side of a test must have served before it is decided"
    )
    monitor_z: float = Field(
        2.576,
        gt=0,
        description="the z a one-sided two-proportion test must reach (about 0.5% per look)",
    )
    monitor_drift_drop: float = Field(
        0.2,
        gt=0,
        lt=1,
        description=(
            "the fall in hit rate, after a cut by ADWIN, that makes the monitor ask for a refit"
        ),
    )
    drift_window_s: float = Field(
        30.0,
        ge=0,
        description=(
            "after the monitor detects a drift, users are folded in (by the worker and by the "
            "refit it asks for, this long after) from the items of their last this many seconds "
            "only, so that their lists follow their new taste from their next events (0: never)"
        ),
    )
    drift_hold_s: float = Field(
        600.0, gt=0, description="how long that window holds after the drift was detected"
    )

    # Privacy
    erasure_tombstone_s: int = Field(
        30 * 86400,
        ge=60,
        description=(
            "how long an erased user's tombstone (pseudonym and erasure time) stays: events "
            "from before the erasure that arrive meanwhile (redelivered, retried) are dropped. "
            "Keep it at least as long as Kafka keeps the events topic (30 d)"
        ),
    )

    # Metrics
    metrics_publish: bool = Field(
        True, description="publish metric records to the metrics topic (false: Prometheus only)"
    )
    metrics_window_ms: int = Field(1000, ge=100, le=60_000, description="a metric record's window")
    worker_metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description=(
            "serve the worker's Prometheus metrics on this port (`/metrics`, no auth: "
            "bind it to a private network)"
        ),
    )
    worker_metrics_host: str = Field("127.0.0.1", description="where that endpoint listens")

    # API
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(8000, ge=0, le=65535, description="API port")
    max_k: int = Field(100, ge=1, le=1000, description="largest `k` a client may ask for")
    api_docs: bool = Field(
        False,
        description=(
            "serve `/docs` and `/openapi.json` (off in production: no free map of the API)"
        ),
    )
    api_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="larger request bodies get 413, whether declared or streamed",
    )
    api_rate_per_s: float = Field(
        100.0,
        gt=0,
        description="requests per second per API key (token bucket in Redis, shared by replicas)",
    )
    api_rate_burst: int = Field(200, ge=1, description="bucket size per API key")
    api_ingest_per_s: float = Field(
        10_000.0,
        gt=0,
        description=(
            "what `POST /v1/events` and `/v1/items` may publish per second per API key, in "
            "units of one per record and one per KiB of it (a bucket of its own; a request "
            "over it gets 429, so 100 requests of 1,000 events are not 100 requests' worth)"
        ),
    )
    api_ingest_burst: int = Field(20_000, ge=1000, description="that bucket's size per API key")
    api_streams_per_key: int = Field(
        4, ge=1, description="`/v1/metrics/stream` connections one API key may hold per process"
    )
    api_max_concurrency: int = Field(
        512,
        ge=1,
        description="requests and connections one API process takes at once (503 beyond)",
    )
    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "API processes sharing the API port (uvicorn's workers, started and stopped "
            "with `streamrec api`, and dying with it): one Python process answers on one "
            "core. Each is a replica with its own model copy, caches and metrics; `GET "
            "/v1/metrics` answers for the process the connection reached, the metrics "
            "topic carries every process's (source `/streamrec/api/<instance>/<pid>`). "
            "`bench serve` runs what is set: on the 2-core development machine, two did "
            "worse there than one (Benchmarks)"
        ),
    )
    api_model_check_s: float = Field(
        0.5,
        ge=0,
        description=(
            "how often an API replica reads the served-version pointer for requests that "
            "do not read it anyway (a promotion is served within it; the common "
            "recommendations request sees it at once)"
        ),
    )
    api_title_cache_s: float = Field(
        60.0,
        ge=0,
        description=(
            "how long an API replica caches item titles, and keeps a user's answer (0: neither)"
        ),
    )
    instance_id: str | None = Field(
        None,
        max_length=64,
        description=(
            "names this API process in `/v1/health` answers; `streamrec up` sets one and "
            "checks that the API answering its readiness probe is its own (random when "
            "unset)"
        ),
    )
    api_key_cache_s: float = Field(
        5.0,
        ge=0,
        description=(
            "an API replica trusts a key it verified for this long: a revocation takes "
            "effect within it"
        ),
    )

    # Secrets: no defaults. The embedded runtime generates throwaway ones for its own run.
    pseudonym_key: SecretStr | None = Field(
        None,
        description=(
            "HMAC key for user pseudonyms, 16+ characters (the embedded runtime generates"
            " a throwaway one. Required."
        ),
    )

    master_keys: SecretStr | None = Field(
        None,
        description=(
            "comma-separated Fernet keys that wrap users' data keys (the worker encrypts "
            "review text); the first encrypts, all decrypt (the embedded runtime "
            "generates a throwaway one. Required by the API and the worker."
        ),
    )
