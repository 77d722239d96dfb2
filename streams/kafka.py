"""Small helpers around Kafka URLs and topic creation (kafka-python admin)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from recommender.errors import ConfigurationError
from recommender.settings import Settings
from recommender.store.connections import UnreachableError, redacted
from streams.records import topic_names

#: How long a bootstrap broker may take to accept a connection before it counts as unreachable.
CONNECT_TIMEOUT_S = 3.0


def bootstrap_servers(url: str) -> str:
    """`kafka://h:p,h2:p2` or `h:p` -> `h:p,h2:p2` (what Kafka clients want)."""
    return url.removeprefix("kafka://")


def kafka_security(settings: Settings) -> dict[str, Any]:
    """What every streamrec Kafka client is given to reach the brokers (kafka-python and
    aiokafka take the same names): the protocol, a TLS context, SASL's user."""
    protocol = settings.kafka_security_protocol
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        cafile = settings.kafka_ssl_cafile
        out["ssl_context"] = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        if not settings.kafka_sasl_username or password is None:
            raise ConfigurationError(
                f"STREAMREC_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "STREAMREC_KAFKA_SASL_USERNAME and STREAMREC_KAFKA_SASL_PASSWORD"
            )
        out["sasl_mechanism"] = settings.kafka_sasl_mechanism
        out["sasl_plain_username"] = settings.kafka_sasl_username
        out["sasl_plain_password"] = password.get_secret_value()
    return out


def faust_credentials(settings: Settings) -> Any:
    """`kafka_security` as Faust's app takes it (None: plaintext)."""
    import faust  # here: the API, which imports this module, never loads Faust

    security = kafka_security(settings)
    if "sasl_mechanism" in security:
        return faust.SASLCredentials(
            username=security["sasl_plain_username"],
            password=security["sasl_plain_password"],
            ssl_context=security.get("ssl_context"),
            mechanism=security["sasl_mechanism"],
        )
    if "ssl_context" in security:
        return faust.SSLCredentials(security["ssl_context"])
    return None


#: A Metadata request (API key 3, version 4) for no topic in particular: every broker since
#: Kafka 1.0 answers it, and it says how many brokers the cluster has.
_METADATA_V4 = struct.pack(">hhih", 3, 4, 1, 15) + b"streamrec-ready" + struct.pack(">ib", -1, 0)


async def broker_answers(url: str, security: dict[str, Any], timeout_s: float = 1.0) -> bool:
    """Whether a bootstrap broker of ``url`` answers a metadata request with the cluster's
    brokers (a readiness probe: a port that accepts connections is not a broker that answers).
    With SASL, which needs its handshake first, a connection that opens is what is checked."""
    sasl = str(security.get("security_protocol", "")).startswith("SASL")
    for server in bootstrap_servers(url).split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), ssl=security.get("ssl_context")),
                timeout_s,
            )
        except (OSError, TimeoutError, ValueError):
            continue
        try:
            if sasl:
                return True
            writer.write(struct.pack(">i", len(_METADATA_V4)) + _METADATA_V4)
            await asyncio.wait_for(writer.drain(), timeout_s)
            size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), timeout_s))
            answer = await asyncio.wait_for(reader.readexactly(size[0]), timeout_s)
            correlation, _, brokers = struct.unpack(">iii", answer[:12])
            if correlation == 1 and brokers > 0:
                return True
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
            continue
        finally:
            writer.close()
    return False


def faust_broker(url: str) -> str:
    """The broker URL for Faust, on streamrec's transport (see `streams.faust_transport`)."""
    return "streamrec://" + bootstrap_servers(url)


def kafka_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """None if a bootstrap broker of ``url`` accepts a TCP connection, else why not.

    kafka-python spends its whole bootstrap timeout (30 s) on an unreachable broker before it
    raises; a plain connection answers at once."""
    why = "no bootstrap server in the URL"
    for server in bootstrap_servers(url).split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host or "localhost", int(port)), timeout_s).close()
            return None
        except ValueError:
            why = f"{server!r} is not host:port"
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
    return why


def check_kafka(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise `UnreachableError` unless a bootstrap broker of ``url`` accepts a connection."""
    why = kafka_reachable(url, timeout_s)
    if why is not None:
        raise UnreachableError(
            f"cannot reach Kafka at {redacted(bootstrap_servers(url))} (STREAMREC_KAFKA_URL): {why}"
        )


def create_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create every streamrec topic that does not exist yet (idempotent). Waits up to
    ``timeout_s`` for the broker (a container starting beside it), then fails with one line."""
    kafka_url, _ = settings.require_infrastructure()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_kafka(kafka_url, timeout_s=1.0)
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap_servers(kafka_url),
                client_id="streamrec-admin",
                **kafka_security(settings),
            )
            break
        except (KafkaError, UnreachableError) as exc:
            if time.monotonic() > deadline:
                if isinstance(exc, UnreachableError):
                    raise
                raise UnreachableError(
                    f"Kafka at {redacted(bootstrap_servers(kafka_url))} did not answer "
                    f"(STREAMREC_KAFKA_URL): {exc}"
                ) from None
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, settings.topic_partitions, 1)
            for name in topic_names(settings)
            if name not in existing
        ]
        if wanted:
            # Another process may win the race; the topic existing is the state we want.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()
