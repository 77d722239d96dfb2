"""The API's process: one uvicorn server, or several processes that share the API's port.

A Python process answers on one core. With `STREAMREC_API_PROCESSES` above 1, uvicorn's process
manager binds the port and starts that many processes, each a replica of its own (its own model
copy, caches and metrics, as replicas on several hosts); the kernel spreads connections across
them. On the 2-core development machine two processes gained on a settled system and lost in
`bench serve` itself, where the trainers still work (docs/benchmark-history.md): 1 by default.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from recommender.settings import Settings
from streamrec.gc_tuning import tune_gc
from streamrec.runtime import ensure_port_free
from streams.processes import die_with_spawning_parent


def serve(settings: Settings) -> None:
    """Serve the API until stopped (SIGTERM or Ctrl-C)."""
    ensure_port_free(settings.api_host, settings.api_port)
    host, port = settings.api_host, settings.api_port
    if settings.api_processes == 1:
        app = create_app(settings)
        tune_gc()
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            limit_concurrency=settings.api_max_concurrency,  # 503 beyond: bounded memory
        )
        return
    # Each process builds its settings from the environment, as this one did; the port may have
    # come from `--port`, so the whole object goes along.
    os.environ.update(settings.as_env())
    uvicorn.run(
        f"{__name__}:app_of_process",
        factory=True,
        workers=settings.api_processes,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        limit_concurrency=settings.api_max_concurrency,
    )


def app_of_process() -> FastAPI:  # pragma: no cover - runs in uvicorn's worker processes
    """uvicorn's factory in each API process. The process dies with uvicorn's manager, however
    the manager dies: a manager killed with SIGKILL would otherwise leave them on the port."""
    die_with_spawning_parent()
    app = create_app(Settings())
    tune_gc()
    return app
