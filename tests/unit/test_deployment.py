"""The production compose file cannot run here; check what can be checked without Docker."""

from pathlib import Path
from typing import Any

import yaml

from recommender.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def test_compose_has_kraft_kafka_aof_redis_worker_and_api():
    services = _compose()["services"]
    assert set(services) == {"kafka", "redis", "worker", "api"}
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    redis = services["redis"]["command"]
    assert "--appendonly" in redis
    # What streamrec needs of any Redis, and Redis as the root of trust: no open default user.
    assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis[redis.index("--user") + 1 : redis.index("--user") + 3] == ["default", "off"]
    env = _compose()["x-streamrec-env"]
    assert env["STREAMREC_REDIS_URL"].startswith("redis://streamrec:${STREAMREC_REDIS_PASSWORD")
    for name in ("kafka", "redis"):
        assert "healthcheck" in services[name]
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_cluster_compose_has_a_cluster_with_replicas_s3_and_two_of_each_process():
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    services = compose["services"]
    nodes = [name for name in services if name.startswith("redis-") and name != "redis-init"]
    assert len(nodes) == 6
    for name in nodes:
        command = services[name]["command"][0]
        assert services[name]["hostname"] == name
        for needed in (
            "--cluster-enabled yes",
            "--maxmemory-policy noeviction",
            "--user default off",
            "--appendonly yes",
            "--masteruser streamrec",
        ):
            assert needed in command, (name, needed)
    assert "--cluster-replicas 1" in services["redis-init"]["command"][0]
    env = compose["x-streamrec-env"]
    assert env["STREAMREC_REDIS_URL"].startswith("redis+cluster://streamrec:")
    assert env["STREAMREC_MODELS_URL"].startswith("s3://")
    assert services["worker"]["deploy"]["replicas"] == services["api"]["deploy"]["replicas"] == 2
    assert "volumes" not in services["api"]  # no shared disk: model versions come from S3
    fields = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    assert [k for k in env if k.startswith("STREAMREC_") and k not in fields] == []


def test_every_streamrec_variable_in_compose_is_a_setting():
    fields = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    for service in _compose()["services"].values():
        env = service.get("environment") or {}
        for key in env:
            if key.startswith("STREAMREC_"):
                assert key in fields, key


def test_every_setting_is_documented_in_the_configuration_page():
    readme = (ROOT / "docs" / "configuration.md").read_text()
    undocumented = [n for n in Settings.model_fields if f"`STREAMREC_{n.upper()}`" not in readme]
    assert undocumented == []


def test_every_redis_key_family_is_in_the_architecture_pages_table():
    from recommender.store import keys

    # A user's keys as the table writes them: `u:{t}:{p}:items`, the braces around the tag `t`
    # (the pseudonym's first characters) being part of the name; an item's `item:{id}`.
    P = "ab12" + "0" * 28

    def placeholders(name: str) -> str:
        return name.replace(P, "{p}").replace("{ab12}", "{t}").replace("{g0}", "{g}")

    families = [
        placeholders(family).replace("%7B", "{").replace("%7D", "}")  # ids' braces, escaped
        for family in [
            keys.user_items(P),
            keys.user_recent(P),
            keys.user_counts(P),
            keys.user_categories(P),
            keys.user_item_times(P),
            keys.item_meta("id"),
            keys.item_users("id"),
            keys.seen(P, "{event_id}"),
            keys.erased(P),
            keys.user_vectors("{v}"),
            keys.user_recs("{v}"),
            keys.pending_recs("{token}"),
            keys.item_vectors("{v}"),
            keys.item_vectors("{v}", ":{cf.N}"),  # a cluster's buckets
            keys.user_vectors("{v}", ":{cf.N}"),
            keys.data_key(P),
            keys.MASTER_KEY_CANARY,
            keys.user_profile(P),
            keys.category_items("{c}"),
            keys.api_key("{key_id}"),
            keys.rate_bucket("{key_id}"),
            keys.USERS_ACTIVE,
            keys.ITEMS_CATALOGUE,
            keys.ITEMS_POPULAR,
            keys.STATS,
            keys.model_current("family"),
            keys.model_history("family"),
            keys.model_challenger("family"),
            keys.model_log("family"),
            keys.user_reviews(P),
            keys.item_image("id"),
            keys.ITEMS_UNCATEGORISED,
            keys.CONTENT_EXAMPLES,
            keys.REVIEW_EXAMPLES,
            keys.train_cursor("{stream}"),
            keys.TRAIN_LEASE,
            keys.user_lists(P),
            keys.user_hits(P),
            keys.legacy_user_impressions("{p}"),
            keys.legacy_user_shown("{p}"),
            *(f"{keys.POP_PREFIX}{name}:{{b}}" for name in keys.WINDOWS),
            keys.items_popular(0),  # a cluster's shards of what every event touches
            keys.users_active(0),
            keys.stats_key(0),
            keys.shard_seen(0, "{event_id}"),
            keys.WINDOWS["1h"].keys_ending_at(0, 0)[0].rsplit(":", 1)[0] + ":{b}",
        ]
    ]
    table = (ROOT / "docs" / "architecture.md").read_text()
    assert [f for f in families if f"`{f}`" not in table] == []
