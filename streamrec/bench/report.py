"""Benchmark output: one JSON file and a readable table."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(path: Path | None, name: str, results: Mapping[str, Any]) -> dict[str, Any]:
    """Print ``results`` as a table and write them (with the environment) as JSON."""
    doc = {"benchmark": name, **results, "environment": environment()}
    scalars = {k: v for k, v in results.items() if not isinstance(v, dict | list)}
    width = max(len(k) for k in scalars)
    print(f"\n{name}")
    print("-" * (width + 16))
    for key, value in scalars.items():
        if isinstance(value, float):
            shown = f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
        else:
            shown = f"{value}"
        print(f"{key:<{width}}  {shown:>12}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"(JSON: {path})")
    return doc
