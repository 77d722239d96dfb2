"""`bench quality`'s sequential rows: SASRec and GRU4Rec alone (early stopping on the validation
split), and the serving chain with SASRec's scores blended in (the weight chosen on validation);
with the family's training cost (a refit's CPU time, a fold-in's encoding, a stream update)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from models.als import ALSModel
from models.blended import ChainWithSequence
from models.sequential import SequentialModel
from recommender.evaluation.ranking import Split, evaluate, sequences

if TYPE_CHECKING:
    import pandas as pd

#: The sequential scores' weight against the chain's (each scaled to a maximum of 1).
SEQUENCE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
#: An upper bound; early stopping on validation NDCG@10 ends the fit first.
MAX_EPOCHS = 40
#: SASRec's own learning rate; GRU4Rec converges in a third of the epochs at this one.
GRU_LR = 3e-3


def _family(kind: str) -> SequentialModel:
    return SequentialModel(kind=kind, lr=GRU_LR) if kind == "gru" else SequentialModel(kind=kind)


def tune(val: Split, val_events: pd.DataFrame, chain: ALSModel, recent_n: int) -> dict[str, Any]:
    """Epochs of each encoder (early stopping) and the blend's weight, on the validation split;
    ``chain`` is the serving chain fitted on the validation training part."""
    seqs = sequences(val_events)
    tuned: dict[str, Any] = {"validation_ndcg@10": {}}
    fitted = {}
    for kind in ("sasrec", "gru"):
        model = _family(kind)

        def score(m: SequentialModel = model) -> float:
            return evaluate(m, val).ndcg

        info = model.fit(seqs, MAX_EPOCHS, validate=score)
        tuned[f"{kind}_epochs"] = info["best_epoch"]
        tuned["validation_ndcg@10"][kind] = round(evaluate(model, val).ndcg, 4)
        fitted[kind] = model
    scored = [
        (evaluate(ChainWithSequence(chain, fitted["sasrec"], w, recent_n), val).ndcg, w)
        for w in SEQUENCE_WEIGHTS
    ]
    tuned["weight"] = max(scored, key=lambda t: (t[0], -t[1]))[1]
    tuned["validation_ndcg@10"]["blend"] = {f"{w:g}": round(s, 4) for s, w in scored}
    return tuned


def rows(
    tuned: dict[str, Any], split: Split, train_events: pd.DataFrame, chain: ALSModel, recent_n: int
) -> tuple[dict[str, dict[str, float]], dict[str, float], SequentialModel]:
    """(the rows `sasrec`, `gru4rec`, `streamrec_sequential`; the training costs; the fitted
    SASRec), each encoder fitted on the test split's training part for its tuned epochs."""
    seqs = sequences(train_events)
    out: dict[str, dict[str, float]] = {}
    models: dict[str, SequentialModel] = {}
    costs: dict[str, float] = {}
    for kind, name in (("sasrec", "sasrec"), ("gru", "gru4rec")):
        model = _family(kind)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(seqs, tuned[f"{kind}_epochs"])
        fit_s = time.perf_counter() - wall
        costs[f"{name}_refit_cpu_s"] = round(time.process_time() - cpu, 1)
        out[name] = {**evaluate(model, split).as_dict(10), "fit_s": round(fit_s, 2)}
        models[kind] = model
    blended = ChainWithSequence(chain, models["sasrec"], tuned["weight"], recent_n)
    out["streamrec_sequential"] = {**evaluate(blended, split).as_dict(10), "fit_s": 0.0}
    costs |= _update_costs(models["sasrec"], split)
    return out, costs, models["sasrec"]


def _update_costs(model: SequentialModel, split: Split) -> dict[str, float]:
    """A fold-in's encoding of one user's latest items, and a stream update per event (a
    micro-batch of 256 users' latest items, one pass)."""
    recents = [r for r in split.recent.values() if r][:256]
    t0 = time.perf_counter()
    for r in recents:
        model.encode([r])
    encode_ms = (time.perf_counter() - t0) * 1000 / max(len(recents), 1)
    t0 = time.perf_counter()
    model.partial_fit([list(reversed(r)) for r in recents])
    events = sum(len(r) for r in recents)
    return {
        "sasrec_encode_ms_per_user": round(encode_ms, 3),
        "sasrec_update_ms_per_event": round((time.perf_counter() - t0) * 1000 / max(events, 1), 4),
    }
