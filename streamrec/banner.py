"""What `streamrec up` and `streamrec demo --serve` print once the system is up: where it is, a
key, and one `export` line that connects another shell (the CLI and the examples in the README
and docs/)."""

from __future__ import annotations

import shlex

from streamrec.runtime import Runtime


def export_line(rt: Runtime, token: str | None) -> str:
    """``export ...`` for another shell: the URLs, the data directory and this run's secrets
    (embedded runs only: they are throwaway), the API's address and key."""
    s = rt.settings
    env: dict[str, str] = {}
    if rt.embedded:
        env = {
            "STREAMREC_KAFKA_URL": s.kafka_url or "",
            "STREAMREC_REDIS_URL": s.redis_url or "",
            "STREAMREC_DATA_DIR": str(s.data_dir),
            "STREAMREC_PSEUDONYM_KEY": s.pseudonym_key.get_secret_value()
            if s.pseudonym_key
            else "",
            "STREAMREC_MASTER_KEYS": s.master_keys.get_secret_value() if s.master_keys else "",
        }
    env["STREAMREC_API_URL"] = rt.api_url
    if token:
        env["STREAMREC_API_KEY"] = token
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def print_banner(rt: Runtime, token: str | None, empty: bool) -> None:
    s = rt.settings
    print(
        f"streamrec is up.\n  API:   {rt.api_url}\n  Kafka: {s.kafka_url}\n"
        f"  Redis: {s.redis_url}\n  logs:  {rt.log_dir}\n"
    )
    if token:
        print(f"An API key for this run (every scope; the X-API-Key header):\n  {token}\n")
        print(f"The live dashboard:\n  {rt.api_url}/v1/dashboard#key={token}\n")
    print(
        "In another shell, this line connects `streamrec` commands and the docs' examples "
        "to this run:\n"
        f"  {export_line(rt, token)}\n"
    )
    if empty:
        print(
            "It holds no data yet. Load the MovieLens sample (100,004 ratings, 9,066 movies):\n"
            "  streamrec import --movielens --wait\n"
            "or your own history and catalogue (`streamrec import --help` shows the formats):\n"
            "  streamrec import ratings.csv --items items.csv\n"
        )
    print(
        "Then, for example:\n"
        '  curl -H "X-API-Key: $STREAMREC_API_KEY" '
        '"$STREAMREC_API_URL/v1/users/1/recommendations?k=5&explain=true"\n'
        "  streamrec metrics        # the metrics topic, live\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
