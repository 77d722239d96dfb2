"""A user's best candidates by the served model: computed by serving on a cache miss and by a
refit, for its users, before its version serves (`recommender.cf.refit_job`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set as AbstractSet

import numpy as np
import numpy.typing as npt

from models.als import ALSModel
from recommender.cf.vectors import CachedCandidates, UserVector

#: The sequential family's scores in the CF model's item order, and their weight.
Scores = tuple[npt.NDArray[np.float32], float]
#: A sequential state is encoded from this many of a user's latest items (the encoder's window).
SEQUENCE_ITEMS = 50


def best_candidates(
    model: ALSModel,
    vec: UserVector,
    seen: AbstractSet[str],
    recent: Sequence[str],
    n: int,
    knn_weight: float,
    recent_decay: float,
    fitted_knows: Callable[[str], bool],
    sequence: Scores | None = None,
) -> CachedCandidates:
    """A user's best ``n`` items by the whole chain's first step (the factors and the
    neighbours of their recent items, their history left out), as of their vector. Items newer
    than the fit that they touched are kept with them (``sequence``: the sequential family's
    scores and weight, `serving.sequence`): the new-item places, filled at request
    time, must skip them."""
    ids, scores = model.recommend_vector(
        vec.vector, n, seen, None, recent, knn_weight, recent_decay, sequence
    )
    return CachedCandidates(
        vec.as_of,
        [(str(i), float(s)) for i, s in zip(ids, scores, strict=True)],
        frozenset(i for i in seen if not fitted_knows(i)),
    )
