"""`ExpiringMemo`: nothing kept outlives its lifetime; every drop is seen in `generation`."""

import time

from recommender.memo import ExpiringMemo


def test_entries_go_all_at_once_when_the_lifetime_is_up_full_or_cleared():
    memo: ExpiringMemo[str, int] = ExpiringMemo(lifetime_s=0.2, max_entries=3)
    memo.put("a", 1)
    memo.put("b", 2)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (1, 2, None)
    generation = memo.generation
    time.sleep(0.25)
    assert memo.get("a") is None and memo.generation == generation + 1

    for n, key in enumerate("abc"):
        memo.put(key, n)
    memo.put("d", 3)  # full: the three before it go
    assert [memo.get(k) for k in "abcd"] == [None, None, None, 3]
    assert memo.generation == generation + 2

    memo.clear()
    assert memo.get("d") is None and len(memo) == 0 and memo.generation == generation + 3


def test_a_lifetime_of_zero_keeps_nothing():
    memo: ExpiringMemo[str, int] = ExpiringMemo(lifetime_s=0.0, max_entries=10)
    memo.put("a", 1)
    assert memo.get("a") is None and len(memo) == 0
