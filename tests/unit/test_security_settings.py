"""Kafka's SASL and TLS, and Redis' ACL users and TLS, from the settings (issue 24, finding 12):
every streamrec Kafka client is given the same `kafka_security`; Redis takes them in its URL."""

from __future__ import annotations

import ssl

import faust
import pytest
from pydantic import SecretStr

from recommender.errors import ConfigurationError
from recommender.settings import Settings
from recommender.store.connections import redacted
from streams.kafka import faust_credentials, kafka_security


def test_plaintext_by_default_and_nothing_else() -> None:
    assert kafka_security(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_over_tls_gives_every_client_the_user_and_a_tls_context() -> None:
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="streamrec",
        kafka_sasl_password=SecretStr("s3cret"),
    )
    security = kafka_security(s)
    assert security["security_protocol"] == "SASL_SSL"
    assert security["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (security["sasl_plain_username"], security["sasl_plain_password"]) == (
        "streamrec",
        "s3cret",
    )
    assert isinstance(security["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(s)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "streamrec" and credentials.ssl_context is not None
    assert "s3cret" not in repr(s)  # a secret never in a log line of the settings


def test_sasl_without_a_user_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="STREAMREC_KAFKA_SASL_USERNAME"):
        kafka_security(Settings(kafka_security_protocol="SASL_PLAINTEXT"))


def test_a_redis_password_never_shows_in_what_streamrec_prints() -> None:
    assert (
        redacted("rediss://streamrec:s3cret@redis:6380/0") == "rediss://streamrec:***@redis:6380/0"
    )


def test_a_cluster_url_may_name_several_seed_nodes_and_keeps_its_credentials():
    from recommender.store.connections import cluster_url, seed_nodes

    url = "rediss+cluster://streamrec:pw@node-1:6379,node-2:6380,node-3/0"
    assert seed_nodes(str(cluster_url(url))) == (
        "rediss://streamrec:pw@node-1:6379/0",
        [("node-2", 6380), ("node-3", 6379)],
    )
    assert seed_nodes(str(cluster_url("redis+cluster://node-1:7000"))) == (
        "redis://node-1:7000",
        [],
    )
