"""The sequential family (`models.sequential`): SASRec and GRU4Rec over a user's last items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.als import ALSModel
from models.baselines import PopularityModel
from models.blended import ChainWithSequence
from models.data import InteractionMatrix
from models.neighbours import blend_sequence
from models.sequential import SequentialModel
from recommender.evaluation.taste_switch import TasteSwitch, events_to_new_taste
from tests.factories import ROMANCE, SCI_FI, clustered_matrix

#: A toy catalogue whose order is everything: each item is followed by the next one, in a ring.
RING = [f"r{n}" for n in range(12)]


def _ring_sequences(users: int, length: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(RING), size=users)
    return [[RING[(int(s) + n) % len(RING)] for n in range(length)] for s in starts]


def _small(kind: str = "sasrec") -> SequentialModel:
    return SequentialModel(dim=16, max_len=6, blocks=1, kind=kind, lr=1e-2, batch_size=32)


def _hit_rate(recommend: object, tests: list[list[str]]) -> float:
    hits = 0
    for seq in tests:
        history, target = seq[:-1], seq[-1]
        ids, _ = recommend(dict.fromkeys(history[-3:], 1.0), 1, recent=history[::-1])  # type: ignore[operator]
        hits += target in {str(i) for i in ids}
    return hits / len(tests)


@pytest.mark.parametrize("kind", ["sasrec", "gru"])
def test_the_sequential_model_beats_popularity_on_a_task_of_order(kind):
    """In a ring every item is as popular as every other, so popularity guesses; what comes
    next is fixed by what came last, which the encoder learns."""
    torch.manual_seed(0)
    train, tests = _ring_sequences(200, 8), _ring_sequences(100, 5, seed=1)
    model = _small(kind)
    model.fit(train, epochs=30)
    popular = PopularityModel()
    popular.fit(
        InteractionMatrix.from_histories(
            [str(n) for n in range(len(train))], [dict.fromkeys(s, 1.0) for s in train]
        )
    )
    assert _hit_rate(model.recommend, tests) >= 0.9
    assert _hit_rate(popular.recommend, tests) <= 0.3


def test_a_saved_model_loads_with_the_same_states_and_vocabulary(tmp_path):
    model = _small()
    model.fit(_ring_sequences(50, 8), epochs=2)
    model.save(tmp_path / "model.pt")
    loaded = SequentialModel.load(tmp_path / "model.pt")
    recents = [["r3", "r2", "r1"], ["r7"]]
    assert list(loaded.item_ids) == list(model.item_ids)
    np.testing.assert_allclose(loaded.encode(recents), model.encode(recents), atol=1e-6)


@pytest.mark.parametrize("blocks", [1, 2])
def test_one_state_in_numpy_is_the_state_torch_gives(blocks):
    """Serving encodes one list at a time in numpy (`models.sasrec_numpy`), batches in torch;
    both must give the same state, before and after the model trains again."""
    model = SequentialModel(dim=16, max_len=6, blocks=blocks, lr=1e-2, batch_size=32)
    model.fit(_ring_sequences(50, 8), epochs=2)
    recents = [["r3", "r2", "r1"], ["r7"], ["r5", "r4", "r3", "r2", "r1", "r0", "r11", "r10"]]
    for _ in range(2):
        batch = model.encode(recents)  # torch
        alone = np.concatenate([model.encode([r]) for r in recents])  # numpy, one at a time
        np.testing.assert_allclose(alone, batch, atol=1e-5)
        assert np.abs(alone).max() > 0.1
        model.partial_fit(_ring_sequences(20, 8, seed=1))


def test_the_stream_teaches_it_new_items_and_keeps_the_old_ones():
    model = _small()
    model.fit(_ring_sequences(50, 8), epochs=2)
    before = model.scores(model.encode([["r1"]])[0]).copy()
    model.partial_fit([["r1", "brand-new", "r2"]])
    assert "brand-new" in set(model.item_ids)
    after = model.scores(model.encode([["r1"]])[0])
    assert after.shape == (len(RING) + 1,)
    # One step moves the weights a little; it does not start them again.
    assert np.corrcoef(before, after[: len(before)])[0, 1] > 0.9


def test_a_user_with_no_known_item_has_a_zero_state_and_unknown_items_score_the_floor():
    model = _small()
    model.fit(_ring_sequences(50, 8), epochs=2)
    assert not model.encode([["never-seen"]]).any()
    state = model.encode([["r1"]])[0]
    # Every item it knows, and one it does not: that one scores the lowest of the others.
    index = model.index_of(np.asarray([*model.item_ids, "elsewhere"], dtype=np.str_))
    aligned = model.aligned_scores(state, index)
    assert aligned[-1] == pytest.approx(model.scores(state).min())
    assert aligned[:-1] == pytest.approx(model.scores(state))
    # Among a few of them, the lowest of those few.
    few = model.index_of(np.asarray(["r2", "r3", "elsewhere"], dtype=np.str_))
    aligned = model.aligned_scores(state, few)
    assert aligned[2] == pytest.approx(min(aligned[:2]))


def test_the_blend_follows_the_sequence_only_as_far_as_its_weight():
    scores = np.asarray([1.0, 0.5, 0.0], dtype=np.float32)
    sequence = np.asarray([0.0, 0.0, 4.0], dtype=np.float32)
    assert int(np.argmax(blend_sequence(scores, sequence, 0.0))) == 0
    assert int(np.argmax(blend_sequence(scores, sequence, 0.5))) == 0
    assert int(np.argmax(blend_sequence(scores, sequence, 2.0))) == 2


def test_the_chain_with_a_sequence_recommends_what_the_latest_items_lead_to():
    """A romance fan (by history) whose last items are sci-fi, read by a sequential model that
    has only ever seen sci-fi follow sci-fi: the blend moves sci-fi up the list."""
    als = ALSModel(factors=8, iterations=10, regularization=1.0, random_state=1)
    als.fit(clustered_matrix())
    seq = _small()
    seq.fit([SCI_FI[n : n + 6] for n in range(len(SCI_FI) - 6)] * 20, epochs=10)
    history = dict.fromkeys(ROMANCE[:8] + SCI_FI[:2], 1.0)
    recent = SCI_FI[:2][::-1]
    alone, _ = als.recommend(history, 5, recent=recent)
    blended, _ = ChainWithSequence(als, seq, 2.0, 10).recommend(history, 5, recent=recent)
    sci_fi = set(SCI_FI)
    assert sum(str(i) in sci_fi for i in blended) > sum(str(i) in sci_fi for i in alone)


def test_a_user_who_switches_taste_is_followed_within_ten_events_with_the_sequence():
    """The taste switch in small (`bench monitor` runs it in full): 80 events of one taste, an
    hour apart, then another. ALS on equal weights holds on to the old taste; the chain with the
    sequential family follows the latest items."""
    sim = TasteSwitch(
        clusters=2, items_per_cluster=60, population=120, users=4, history=80, max_events=80
    )
    chain = (0.5, 0.8, 10)
    followed = events_to_new_taste(sim, 0.0, chain, sequential=0.5)
    assert followed <= 10
    assert followed < events_to_new_taste(sim, 0.0)


def test_a_stream_update_teaches_each_example_its_last_item():
    model = _small()
    model.fit(_ring_sequences(50, 8), epochs=2)
    for _ in range(30):
        model.partial_fit([["r1", "r2", "r3", "new-next"]], last_only=True)
    ids, _ = model.recommend({}, 1, recent=["r3", "r2", "r1"])
    assert list(ids) == ["new-next"]
