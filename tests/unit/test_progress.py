"""What a person sees while the worker catches up (the demo sat silent for most of a minute after
its progress bar reached 100%)."""

from collections.abc import Iterator

import pytest

from recommender.lifecycle.state import ServedModel
from streamrec.progress import Progress, WorkerTimeoutError, wait_until_served


def _steps() -> Iterator[Progress]:
    for applied in (0, 400, 1000, 1000, 1000):
        yield Progress({"events_applied": applied}, ServedModel("v1", 400))
    while True:
        yield Progress({"events_applied": 1000}, ServedModel("v2", 1000))


def test_shows_the_worker_catching_up_then_the_fit(capsys):
    steps = _steps()
    done = wait_until_served(lambda: next(steps), 1000, 100, 5, show=True, poll_s=0)
    assert done.served is not None and done.served.version == "v2"
    err = capsys.readouterr().err
    assert "applied by the worker" in err and "1000/1000" in err
    assert "fitting a model on 1,000 events" in err


def test_no_model_is_waited_for_below_the_minimum():
    done = wait_until_served(lambda: Progress({"events_applied": 5}, None), 5, 1000, 5, poll_s=0)
    assert done.served is None


def test_a_worker_that_never_comes_says_so():
    with pytest.raises(WorkerTimeoutError, match="is a worker running"):
        wait_until_served(lambda: Progress({}, None), 10, 1, 0.05, poll_s=0.01)
