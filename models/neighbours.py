"""Item-to-item neighbours: cosine similarity of binary interaction columns, top-n per item, kept
sparse (a dense item x item matrix is 330 MB for MovieLens' 9,066 items)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix, diags

from models.data import InteractionMatrix


def item_neighbours(data: InteractionMatrix, n: int = 100) -> csr_matrix:
    """Row i: item i's ``n`` most similar items (cosine), float32; the diagonal is zero."""
    x = (data.matrix > 0).astype(np.float32).tocsc()
    co = (x.T @ x).tocsr()
    norms = np.sqrt(co.diagonal()) + 1e-9
    inv = diags(1.0 / norms)
    sim = (inv @ co @ inv).tocsr()
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    indptr, indices, values = [0], [], []
    for row in range(sim.shape[0]):
        start, end = sim.indptr[row], sim.indptr[row + 1]
        cols, vals = sim.indices[start:end], sim.data[start:end]
        if len(vals) > n:
            keep = np.argpartition(-vals, n - 1)[:n]
            cols, vals = cols[keep], vals[keep]
        indices.append(cols)
        values.append(vals)
        indptr.append(indptr[-1] + len(cols))
    return csr_matrix(
        (
            np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32),
            np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32),
            np.asarray(indptr, dtype=np.int64),
        ),
        shape=sim.shape,
    )


def recent_scores(
    neighbours: csr_matrix,
    index: Mapping[str, int],
    recent: Sequence[str],
    decay: float,
) -> npt.NDArray[np.float32] | None:
    """Sum of the neighbour rows of the user's recent items (newest first), the r-th weighted
    ``decay**r``; None when no recent item is known."""
    rows, weights = [], []
    for rank, item in enumerate(recent):
        i = index.get(item)
        if i is not None:
            rows.append(i)
            weights.append(decay**rank)
    if not rows:
        return None
    w = np.asarray(weights, dtype=np.float32)
    return np.asarray(w @ neighbours[rows], dtype=np.float32).ravel()


def save_arrays(prefix: str, m: csr_matrix) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def load_arrays(prefix: str, npz: Mapping[str, np.ndarray]) -> csr_matrix | None:
    if f"{prefix}_data" not in npz:
        return None
    shape = tuple(int(v) for v in npz[f"{prefix}_shape"])
    return csr_matrix(
        (npz[f"{prefix}_data"], npz[f"{prefix}_indices"], npz[f"{prefix}_indptr"]), shape=shape
    )


def blend(
    scores: npt.NDArray[np.float32],
    near: npt.NDArray[np.float32],
    weight: float,
    fitted_rows: int | None,
) -> npt.NDArray[np.float32]:
    """Factor ``scores`` blended with the recent items' neighbour scores ``near``, each scaled
    to a maximum of 1. Items newer than the fit (from ``fitted_rows`` on) have no neighbours
    yet: their factor score stands in for the neighbour score, so that a new item competes on
    equal terms."""
    scores = scores / (np.abs(scores).max() + 1e-9)
    near = near / (np.abs(near).max() + 1e-9)
    fitted = len(near) if fitted_rows is None else fitted_rows
    near[fitted:] = scores[fitted:]
    return np.asarray(scores + weight * near, dtype=np.float32)


def blend_sequence(
    scores: npt.NDArray[np.float32], sequence: npt.NDArray[np.float32], weight: float
) -> npt.NDArray[np.float32]:
    """``scores`` plus ``weight`` times the sequential family's, each scaled to a maximum of 1
    (the neighbour blend's rule; chosen on validation over softmax and z-scaling, which did no
    better: docs/benchmark-history.md)."""
    scores = scores / (np.abs(scores).max() + 1e-9)
    return np.asarray(scores + weight * sequence / (np.abs(sequence).max() + 1e-9), np.float32)
