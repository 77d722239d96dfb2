"""`streamrec keys ...`: API keys and master-key rotation, against the configured Redis."""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis

from recommender.access import ApiKeyStore
from recommender.crypto import UserDataCipher, master_cipher
from recommender.errors import ConfigurationError
from recommender.settings import Settings


def _redis(settings: Settings) -> aioredis.Redis:
    if not settings.redis_url:
        raise ConfigurationError(
            "set STREAMREC_REDIS_URL to the running system's Redis (`streamrec up` prints it)"
        )
    return aioredis.Redis.from_url(settings.redis_url, decode_responses=True)


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    redis = _redis(settings)
    try:
        store = ApiKeyStore(redis)
        if args.action == "create":
            issued = await store.create(set(args.scope), args.name)
            print(f"key id: {issued.key.key_id}  scopes: {' '.join(sorted(issued.key.scopes))}")
            print(f"key:    {issued.token}")
            print("The key is shown only now; streamrec keeps only its hash.")
        elif args.action == "list":
            for key in await store.list():
                created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created_at))
                print(f"{key.key_id}  {created}Z  {' '.join(sorted(key.scopes)):<16} {key.name}")
        elif args.action == "revoke":
            if not await store.revoke(args.key_id):
                print(f"no key {args.key_id}")
                return 1
            print(
                f"revoked {args.key_id} (API replicas stop accepting it within "
                f"{settings.api_key_cache_s:g} s)"
            )
        elif args.action == "rotate":
            cipher = UserDataCipher(redis, master_cipher(settings.require_master_keys()))
            print(f"re-wrapped {await cipher.rotate()} data keys under the first master key")
        return 0
    finally:
        await redis.aclose()


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_keys(settings, args))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("keys", help="API keys (create, list, revoke) and master-key rotation")
    actions = k.add_subparsers(dest="action", required=True)
    c = actions.add_parser("create", help="create an API key and print it (once)")
    c.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=["read", "write", "admin"],
        help="repeat for several scopes",
    )
    c.add_argument("--name", default="", help="what the key is for")
    actions.add_parser("list", help="key ids, creation times, scopes and names (no secrets)")
    r = actions.add_parser("revoke", help="revoke a key by its id")
    r.add_argument("key_id")
    actions.add_parser(
        "rotate",
        help="re-wrap every user's data key under the first of STREAMREC_MASTER_KEYS",
    )
    k.set_defaults(func=run_keys)
