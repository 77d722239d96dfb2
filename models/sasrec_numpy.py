"""SASRec's forward pass in numpy, for serving one user's state at a time.

Serving encodes one user (or one session) per list it computes, and torch's per-operator
overhead is most of that cost for a 50 x 64 sequence: 0.53 ms a state against 0.18 ms here (ad
hoc, an idle machine), and in a sampled profile of the API under `bench freshness`'s load the
torch forward held the event loop about 2 ms per list. numpy's own per-call overhead is most of
what is left, so each layer's constants are folded into its weights once (`_Block`). The weights
are the torch module's, read once; `SequentialModel.encode` uses this path for a single sequence
and torch for batches (a refit's users), and a test holds the two to the same states.

It mirrors `torch.nn.TransformerEncoderLayer` as `models.sequential` configures it: pre-norm,
one attention head, GELU (exact), causal mask only (left padding is zeroed, not masked), no
dropout (eval); the final block computes the newest position only, the one a state reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy.special import erf

if TYPE_CHECKING:
    from torch import nn

Array = npt.NDArray[np.float32]
EPS = 1e-5  # torch's LayerNorm default


class NumpySASRec:
    def __init__(self, net: nn.Module) -> None:
        w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
        self.dim = w["items.weight"].shape[1]
        self.items = w["items.weight"] * np.float32(math.sqrt(self.dim))
        self.positions = w["positions.weight"]
        layers = sorted({int(k.split(".")[2]) for k in w if k.startswith("blocks.layers.")})
        self.blocks = [_Block.folded(w, f"blocks.layers.{n}.", self.dim) for n in layers]
        self.norm = (w["norm.weight"], w["norm.bias"])
        longest = len(self.positions)
        self._causal = np.triu(np.full((longest, longest), -np.inf, dtype=np.float32), 1)

    def state(self, ids: npt.NDArray[np.int64]) -> Array:
        """The encoder's output at the newest position of one left-padded row of item ids."""
        x = self.items[ids] + self.positions[-len(ids) :]
        x[ids == 0] = 0.0  # padding is zeroed, not masked (as the torch module does)
        causal = self._causal[-len(ids) :, -len(ids) :]
        for block in self.blocks[:-1]:
            x = block.forward(x, causal)
        x = self.blocks[-1].forward(x, causal[-1:], last=True)[-1]
        out: Array = _normed(x) * self.norm[0] + self.norm[1]
        return out if ids[-1] > 0 else np.zeros_like(out)


class AlignedItems:
    """A sequential model's item embeddings gathered once into another model's item order
    (``index``: each item's row in ``items``, 0 for one it does not know), so that a state's
    scores in that order are one product (with the queries sliced rather than split, a list's
    sequential scores took 0.31 ms against 0.49, ad hoc). An item the model does not know
    scores the lowest of those it knows there: no opinion, not a veto."""

    def __init__(self, items: Array, index: npt.NDArray[np.int64]) -> None:
        self.index = index
        self._known = index > 0
        self._any_unknown = not bool(self._known.all())
        self._weights = np.ascontiguousarray(items[index], dtype=np.float32)

    def scores(self, states: Array) -> Array:
        out: Array = np.asarray(states @ self._weights.T, dtype=np.float32)
        if self._any_unknown:
            floor = np.min(out, axis=1, where=self._known, initial=np.inf, keepdims=True)
            out[:, ~self._known] = np.where(np.isfinite(floor), floor, 0.0)
        return out


@dataclass(frozen=True)
class _Block:
    """One pre-norm encoder layer with its constants folded into its weights, once per model:
    each layer norm's gain and bias into the projection after it, attention's 1 / sqrt(dim)
    into the queries, GELU's 1 / sqrt(2) into the feed-forward layers: with `_normed`'s sums, a
    state took 0.18 ms against 0.27 as the layer is written (ad hoc, an idle machine)."""

    qkv: Array  # dim x 3 dim
    qkv_bias: Array
    out: Array  # dim x dim
    out_bias: Array
    up: Array  # dim x feed-forward
    up_bias: Array
    down: Array  # feed-forward x dim
    down_bias: Array

    @classmethod
    def folded(cls, w: dict[str, Array], prefix: str, dim: int) -> _Block:
        def g(name: str) -> Array:
            return w[prefix + name]

        qkv, qkv_bias = _fold_norm(w, prefix + "norm1", prefix + "self_attn.in_proj_")
        scale = np.ones(3 * dim, dtype=np.float32)
        scale[:dim] = 1 / math.sqrt(dim)
        up, up_bias = _fold_norm(w, prefix + "norm2", prefix + "linear1.")
        root2 = np.float32(math.sqrt(2.0))
        return cls(
            qkv * scale, qkv_bias * scale,
            np.ascontiguousarray(g("self_attn.out_proj.weight").T), g("self_attn.out_proj.bias"),
            up / root2, up_bias / root2,
            np.ascontiguousarray(g("linear2.weight").T) / root2, g("linear2.bias"),
        )  # fmt: skip

    def forward(self, x: Array, mask: Array, last: bool = False) -> Array:
        dim = x.shape[1]
        qkv = _normed(x) @ self.qkv + self.qkv_bias
        q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        if last:  # the newest position only: the one a state reads
            q, x = q[-1:], x[-1:]
        scores = q @ k.T + mask
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        x = x + (scores / scores.sum(axis=1, keepdims=True)) @ v @ self.out + self.out_bias
        u = _normed(x) @ self.up + self.up_bias  # GELU's input over sqrt(2)
        out: Array = x + (u * (1.0 + erf(u))) @ self.down + self.down_bias
        return out


def _fold_norm(w: dict[str, Array], norm: str, linear: str) -> tuple[Array, Array]:
    """The layer norm ``norm`` then the projection ``linear`` (``linear`` + "weight" and
    + "bias"), as ``_normed(x) @ A + b``: (A, b)."""
    gain, bias = w[norm + ".weight"], w[norm + ".bias"]
    weight, weight_bias = w[linear + "weight"], w[linear + "bias"]
    return np.ascontiguousarray(gain[:, None] * weight.T), bias @ weight.T + weight_bias


def _normed(x: Array) -> Array:
    """A layer norm without its gain and bias (those are folded into what reads it); sums
    rather than `mean`, whose Python wrapper costs as much as the arithmetic on 50 x 64."""
    scale = np.float32(1.0 / x.shape[-1])
    centred = x - x.sum(axis=-1, keepdims=True) * scale
    var = np.einsum("...i,...i->...", centred, centred)[..., None] * scale
    out: Array = centred / np.sqrt(var + EPS)
    return out
