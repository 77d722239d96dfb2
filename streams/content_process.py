"""The content trainer's process: spawned and stopped by the worker (`streams.composition`),
at background priority and killed with the worker whatever kills it
(`streams.processes.background_child`, as the fit process), one torch thread."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from recommender.content.trainer import ContentTrainer
from recommender.privacy.crypto import UserDataCipher, master_cipher
from recommender.privacy.reviews import ReviewStore
from recommender.settings import Settings
from recommender.store.connections import redis_async
from recommender.store.features import FeatureStore
from streams.processes import background_child


def run(env: dict[str, str]) -> None:  # pragma: no cover - runs in a child process
    """Entry point: settings from ``env`` (the worker's), then train until SIGTERM."""
    background_child()  # training takes only the CPU that ingestion and serving leave
    os.environ.update(env)
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s content-trainer: %(message)s"
    )
    asyncio.run(_main(Settings()))


async def _main(settings: Settings) -> None:  # pragma: no cover - runs in a child process
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    _, redis_url = settings.require_infrastructure()
    redis = redis_async(redis_url)
    store = FeatureStore(redis, settings)
    reviews = ReviewStore(
        redis,
        UserDataCipher(redis, master_cipher(settings.require_master_keys())),
        store.pseudonym_of,
        settings.user_ttl_s,
    )
    try:
        await ContentTrainer(redis, settings, reviews).run(stop)
    finally:
        await redis.aclose()
