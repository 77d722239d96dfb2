"""Where the served CF model will place a new item from its content, computed outside the
worker (with the same map and text model), and which user it suits best: what the demo and the
benchmark need to show a brand-new item reaching a matching user's recommendations."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from models.features import item_text
from models.text import TextClassifier
from recommender.cf.vectors import decode_vector
from recommender.lifecycle.families import TEXT, cf_registry, model_registry
from recommender.settings import Settings
from recommender.store import keys
from recommender.store.connections import cluster_url, redis_sync
from streams.records import ContentV1


def cold_start_ready(settings: Settings) -> tuple[str, str] | None:
    """(CF version, text version) when the served CF model has a cold-start map, and the text
    version that map reads (the worker places new items with that one, whichever text version
    serves now); None before."""
    client = redis_sync(settings.infra.redis_url)
    try:
        cf = client.hget(keys.model_current(keys.CF), "version")
    finally:
        client.close()
    if not cf:
        return None
    cmap = cf_registry(settings).load(str(cf)).content_map
    if cmap is None:
        return None
    return str(cf), cmap.text_version


def wait_cold_start(settings: Settings, timeout_s: float, check: object = None) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check):
            check()
        found = cold_start_ready(settings)
        if found is not None:
            return found
        time.sleep(1.0)
    raise TimeoutError("no served CF model with a cold-start map")


def matching_users(
    settings: Settings, cf_version: str, items: Sequence[ContentV1], user_ids: Iterable[str]
) -> list[tuple[str, int]]:
    """For each item, in order, the user (of ``user_ids``) whose taste it is closest to among
    every item (cosine, as serving's new-item places choose), and who has no closer new item among
    those before it (serving keeps one place for the closest): the placement the worker will
    compute, scored against every user's vector. With each user, how many items are closer to
    their taste than the new one (serving shows it only below `serve_new_item_within`)."""
    cf = cf_registry(settings).load(cf_version)
    if cf.content_map is None:
        raise ValueError(f"CF version {cf_version} has no cold-start map")
    text: TextClassifier = model_registry(settings).family(TEXT).load(cf.content_map.text_version)
    secret = settings.pseudonym_secret
    ids = {keys.pseudonymize(secret, u): u for u in user_ids}
    client = redis_sync(settings.infra.redis_url)
    try:
        on_cluster = bool(cluster_url(settings.infra.redis_url))
        pipe = client.pipeline(transaction=False)
        for p in ids:
            pipe.hget(keys.user_vectors(cf_version, keys.vector_bucket(p, on_cluster)), p)
        raw = pipe.execute()
    finally:
        client.close()
    found = [(ids[p], v.vector) for p, r in zip(ids, raw, strict=True) if (v := decode_vector(r))]
    users = [u for u, _ in found]
    matrix = np.stack([v for _, v in found])
    placed = cf.content_map.place(
        text.embed([item_text(it.title, it.text) for it in items]),
        [dict.fromkeys(it.categories, 1.0) for it in items],
    )
    unit = matrix / (np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-9)
    catalogue = cf.item_factors / (np.linalg.norm(cf.item_factors, axis=1, keepdims=True) + 1e-9)
    known = unit @ catalogue.T  # [users, items]
    closest_new = np.full(len(users), -np.inf)  # each user's closest new item so far
    out = []
    for f in placed:
        mine = unit @ (f / (np.linalg.norm(f) + 1e-9))
        ahead = (known > mine[:, None]).sum(axis=1)  # items closer to each user's taste
        ahead = np.where(mine > closest_new, ahead, np.iinfo(np.int64).max // 2)
        best = int(ahead.argmin())
        out.append((users[best], int(ahead[best])))
        closest_new = np.maximum(closest_new, mine)
    return out
