"""The fault battery, small: SIGKILL the worker mid-stream; nothing lost, nothing counted twice."""

import pytest

from streamrec.bench.faults import run_faults

pytestmark = pytest.mark.integration


def test_killed_workers_lose_nothing_and_count_nothing_twice(settings, redis, tmp_path):
    result = run_faults(
        settings, events=4000, kills=2, rate=400, json_path=tmp_path / "f.json", quiet=True
    )
    assert result["produced"] == result["applied"] == 4000
    assert result["lost"] == 0
    assert result["missing_cells"] == 0
    assert result["double_counted"] == 0
    assert result["two_workers_identical"]
    assert (tmp_path / "f.json").exists()
