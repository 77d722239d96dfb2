"""`streamrec keys ...` and `streamrec models ...`: API keys, master-key rotation and the model
lifecycle, against the configured Redis (and, for models, the configured data directory)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import redis.asyncio as aioredis

from models.registry import ModelRegistry
from recommender.access import ApiKeyStore
from recommender.connections import check_redis, redis_async
from recommender.crypto import UserDataCipher, master_cipher
from recommender.errors import ConfigurationError
from recommender.feature_store import FeatureStore
from recommender.lifecycle import ModelLifecycle
from recommender.model_state import ModelState
from recommender.settings import Settings


def _redis(settings: Settings) -> aioredis.Redis:
    if not settings.redis_url:
        raise ConfigurationError(
            "STREAMREC_REDIS_URL is not set: point it at the running system's Redis "
            "(`streamrec up` prints an export line with it)"
        )
    check_redis(settings.redis_url)
    return redis_async(settings.redis_url)


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    redis = _redis(settings)
    try:
        store = ApiKeyStore(redis)
        if args.action == "create":
            issued = await store.create(set(args.scope), args.name)
            if args.quiet:
                print(issued.token)
                return 0
            print(f"key id: {issued.key.key_id}  scopes: {' '.join(sorted(issued.key.scopes))}")
            print(f"key:    {issued.token}")
            print("The key is shown only now; streamrec keeps only its hash.")
        elif args.action == "list":
            for key in await store.list():
                created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created_at))
                print(f"{key.key_id}  {created}Z  {' '.join(sorted(key.scopes)):<16} {key.name}")
        elif args.action == "revoke":
            shown = args.key.split("_")[1] if args.key.startswith("sr_") else args.key
            if not await store.revoke(args.key):
                print(f"no key {shown} (`streamrec keys list` shows the ids)", file=sys.stderr)
                return 1
            print(
                f"revoked {shown} (API replicas stop accepting it within "
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


async def _models(settings: Settings, args: argparse.Namespace) -> int:
    redis = _redis(settings)
    try:
        state = ModelState(redis)
        life = ModelLifecycle(
            FeatureStore(redis, settings), state, ModelRegistry(settings.models_dir)
        )
        if args.action == "list":
            rows = await life.versions()
            if not rows:
                print(f"no model versions in {settings.models_dir}")
            for m in rows:
                mark = ("*" if m["served"] else " ") + ("P" if m["pinned"] else " ")
                ndcg = m.get("holdout_ndcg@10")
                print(
                    f"{mark} {m['version']}  events {m.get('watermark', 0):>9,}  "
                    f"users {m.get('users', 0):>7,}  items {m.get('items', 0):>7,}  "
                    f"ndcg@10 {'-' if ndcg is None else f'{ndcg:.4f}'}  "
                    f"{m.get('status', 'served')}"
                )
            challenger = await state.challenger()
            if challenger:
                print(f"challenger: {challenger['version']} ({challenger.get('reason', '')})")
            print("(* served, P pinned: refits do not replace it until `streamrec models unpin`)")
        elif args.action == "promote":
            folded = await life.promote(args.version, pinned=not args.no_pin)
            pin = "" if args.no_pin else ", pinned"
            print(f"serving {args.version}{pin} ({folded} users' vectors computed for it)")
        elif args.action == "rollback":
            print(f"serving {await life.rollback()}, pinned")
        elif args.action == "unpin":
            await life.unpin()
            print("unpinned: the next refit that passes the quality gate will be served")
        return 0
    finally:
        await redis.aclose()


def run_models(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_models(settings, args))


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
    c.add_argument("--quiet", action="store_true", help="print the key alone (for scripts)")
    actions.add_parser("list", help="key ids, creation times, scopes and names (no secrets)")
    r = actions.add_parser("revoke", help="revoke a key, named by its id or by the key itself")
    r.add_argument("key", help="the key id (from `keys list`) or the whole key")
    actions.add_parser(
        "rotate",
        help="re-wrap every user's data key under the first of STREAMREC_MASTER_KEYS",
    )
    k.set_defaults(func=run_keys)


def add_models_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("models", help="model versions: list, promote, rollback, unpin")
    actions = m.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="versions with their data, holdout NDCG@10 and status")
    p = actions.add_parser("promote", help="serve a version (pinned unless --no-pin)")
    p.add_argument("version")
    p.add_argument("--no-pin", action="store_true", help="let later refits replace it")
    actions.add_parser("rollback", help="serve the previously served version, pinned")
    actions.add_parser("unpin", help="let refits that pass the quality gate be served again")
    m.set_defaults(func=run_models)
