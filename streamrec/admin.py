"""`streamrec keys ...` and `streamrec models ...`: API keys, master-key rotation and the model
lifecycle, against the configured Redis (and, for models, the configured data directory)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from recommender.cf.lifecycle import lifecycle_for
from recommender.errors import ConfigurationError
from recommender.lifecycle.families import MODEL_FAMILIES
from recommender.lifecycle.publishing import ModelLifecycle
from recommender.privacy.access import ApiKeyStore
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.settings import Settings
from recommender.store.connections import check_redis, redis_async
from recommender.store.features import FeatureStore


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
        if args.family not in MODEL_FAMILIES:
            raise ConfigurationError(
                f"no model family {args.family!r}; known: {', '.join(sorted(MODEL_FAMILIES))}"
            )
        life = lifecycle_for(args.family, redis, settings)
        if args.action == "list":
            return await _list(life, settings, redis, args.quiet)
        if args.action == "promote":
            folded = await life.promote(args.version, pinned=not args.no_pin)
            pin = "" if args.no_pin else ", pinned"
            extra = f" ({folded:,} users' vectors computed for it)" if folded else ""
            print(f"{args.family}: serving {args.version}{pin}{extra}")
        elif args.action == "rollback":
            print(f"{args.family}: serving {await life.rollback()}, pinned")
        elif args.action == "unpin":
            now = await life.unpin()
            if now is not None:
                print(f"{args.family}: unpinned; serving {now}, the best version the pin held back")
            else:
                print(
                    f"{args.family}: unpinned; no held-back version passed the gate, so the "
                    "next refit that passes it will be served"
                )
        return 0
    finally:
        await redis.aclose()


async def _list(
    life: ModelLifecycle[Any], settings: Settings, redis: aioredis.Redis, quiet: bool
) -> int:
    rows = await life.versions()
    if quiet:
        for row in rows:
            print(row.version)
        return 0
    family = life.family
    if not rows:
        applied = (await FeatureStore(redis, settings).stats.all()).get("events_applied", 0)
        print(
            f"{family}: no versions yet ({applied:,} events applied; the first fit needs "
            f"{settings.als_min_events:,}, STREAMREC_ALS_MIN_EVENTS)"
        )
        return 0
    gates = [row.gate_text() for row in rows]
    width = max(len("gate (holdout score vs served, users)"), *map(len, gates)) + 2
    data = "examples" if family != "cf" else "events"
    print(f"{family}: {len(rows)} versions")
    print(
        f"   {'version':<24}{data:>10}{'users':>8}{'items':>8}  "
        f"{'gate (holdout score vs served, users)':<{width}}status"
    )
    erased = (await FeatureStore(redis, settings).stats.all()).get("last_erasure_ms", 0)
    for row, gate in zip(rows, gates, strict=True):
        m = row.meta
        mark = ("*" if row.served else " ") + ("P" if row.pinned else " ")
        size = m.get("watermark", m.get("examples", 0))
        older = erased and m.get("created_at", 0) * 1000 < erased
        print(
            f"{mark} {row.version:<24}{size:>10,}{m.get('users', 0):>8,}"
            f"{m.get('items', 0):>8,}  {gate:<{width}}{row.status_text()}"
            + ("; predates an erasure" if older else "")
        )
    decisions = await life.decisions(8)
    if decisions:
        print("recent decisions, newest first:")
        for d in decisions:
            at = time.strftime("%H:%M:%SZ", time.gmtime(d.at_ms / 1000))
            why = f"  {d.reason}" if d.reason else ""
            print(f"  {at}  {d.action:<12}{d.version}  by {d.by}{why}")
    print("* serving now, P pinned (refits are kept, not served, until `streamrec models unpin`)")
    if erased:
        at = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(erased / 1000))
        print(
            f"'predates an erasure': fitted before the last erasure ({at}); the erased users' data "
            "is in no later version"
        )
    return 0


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
    m = sub.add_parser(
        "models",
        help="model versions: list, promote, rollback, unpin",
        description="The model lifecycle of one family (--family, default cf): which version "
        "serves, which were served, which were held back and why.",
    )
    family = argparse.ArgumentParser(add_help=False)
    family.add_argument(
        "--family",
        default="cf",
        help=f"model family: {', '.join(sorted(MODEL_FAMILIES))} (default cf)",
    )
    actions = m.add_subparsers(dest="action", required=True)
    ls = actions.add_parser(
        "list",
        parents=[family],
        help="versions: data, quality gate, when served, why held; recent decisions",
    )
    ls.add_argument("--quiet", action="store_true", help="version names only, oldest first")
    p = actions.add_parser(
        "promote", parents=[family], help="serve a version, pinned unless --no-pin"
    )
    p.add_argument("version")
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="serve it without pinning: the next refit that passes the gate replaces it",
    )
    actions.add_parser(
        "rollback",
        parents=[family],
        help="serve the version served before this one, pinned (again: further back)",
    )
    actions.add_parser(
        "unpin",
        parents=[family],
        help="let refits replace the served version; serve at once the best version the pin "
        "held back, if one passed the gate",
    )
    m.set_defaults(func=run_models)
