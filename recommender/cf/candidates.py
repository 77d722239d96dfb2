"""A user's best candidates by the served model: computed by serving on a cache miss and by a
refit, for its users, before its version serves (`recommender.cf.refit_job`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set as AbstractSet

from models.als import ALSModel
from recommender.cf.vectors import CachedCandidates, UserVector


def best_candidates(
    model: ALSModel,
    vec: UserVector,
    seen: AbstractSet[str],
    recent: Sequence[str],
    n: int,
    knn_weight: float,
    recent_decay: float,
    fitted_knows: Callable[[str], bool],
) -> CachedCandidates:
    """A user's best ``n`` items by the whole chain's first step (the factors and the
    neighbours of their recent items, their history left out), as of their vector. Items newer
    than the fit that they touched are kept with them: the new-item places, filled at request
    time, must skip them."""
    ids, scores = model.recommend_vector(
        vec.vector, n, seen, None, recent, knn_weight, recent_decay
    )
    return CachedCandidates(
        vec.as_of,
        [(str(i), float(s)) for i, s in zip(ids, scores, strict=True)],
        frozenset(i for i in seen if not fitted_knows(i)),
    )
