"""The sequential family: what a user does next, from the order of what they did last.

SASRec (Kang & McAuley, 2018): a few causal self-attention blocks over a user's last `max_len`
items, item embeddings tied between input and output, initialised small; GRU4Rec's recurrent
encoder is the alternative (`kind="gru"`). Trained with a full softmax over the catalogue on
every position of every window (MovieLens' 9,066 items: cheap on a CPU, and better than sampled
negatives on so little data).

A user's *state* is the encoder's output at their newest item (`encode`): one vector, scored
against the item embeddings (`scores`). Serving computes it where it computes a user's
candidates (after their events were folded in, or ahead, in a refit) and caches the blended
list with them, so the common request reads it in its one round trip.

`partial_fit` trains on a micro-batch (the stream) and grows the vocabulary for items the model
has not seen, initialised small like the rest. `save` writes the `state_dict` with the vocabulary
and settings as plain lists; `load` reads it with `weights_only=True`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.base import Ranked, top_k
from models.sasrec_numpy import AlignedItems, NumpySASRec

INIT_STD = 0.02


class _Encoder(nn.Module):
    def __init__(self, items: int, dim: int, max_len: int, blocks: int, kind: str) -> None:
        super().__init__()
        self.kind, self.max_len = kind, max_len
        self.items = nn.Embedding(items + 1, dim, padding_idx=0)
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(0.2)
        if kind == "sasrec":
            layer = nn.TransformerEncoderLayer(
                dim, 1, dim, 0.2, batch_first=True, norm_first=True, activation="gelu"
            )
            self.blocks: nn.Module = nn.TransformerEncoder(
                layer, blocks, enable_nested_tensor=False
            )
        else:
            self.blocks = nn.GRU(dim, dim, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        for emb in (self.items, self.positions):
            nn.init.normal_(emb.weight, std=INIT_STD)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position of left-padded ``seqs`` (batch x max_len)."""
        present = (seqs > 0).unsqueeze(-1)
        x = self.items(seqs) * math.sqrt(self.items.embedding_dim)
        if self.kind == "sasrec":
            x = x + self.positions.weight[-seqs.shape[1] :]
        # Padding is zeroed rather than masked: a fully masked row of attention is NaN.
        x = self.dropout(x) * present
        if self.kind == "sasrec":
            causal = nn.Transformer.generate_square_subsequent_mask(seqs.shape[1])
            x = self.blocks(x, mask=causal, is_causal=True)
        else:
            x, _ = self.blocks(x)
        out: torch.Tensor = self.norm(x) * present
        return out

    def grow(self, items: int) -> None:
        old = self.items
        if items + 1 <= old.num_embeddings:
            return
        new = nn.Embedding(items + 1, old.embedding_dim, padding_idx=0)
        nn.init.normal_(new.weight, std=INIT_STD)
        with torch.no_grad():
            new.weight[: old.num_embeddings] = old.weight
        self.items = new


class SequentialModel:
    """SASRec (or GRU4Rec) over string item ids; see the module doc."""

    name = "sequential"
    artifact: ClassVar[str] = "model.pt"

    def __init__(
        self,
        dim: int = 64,
        max_len: int = 50,
        blocks: int = 2,
        kind: str = "sasrec",
        lr: float = 1e-3,
        batch_size: int = 128,
        seed: int = 42,
    ) -> None:
        self.settings: dict[str, Any] = {
            "dim": dim,
            "max_len": max_len,
            "blocks": blocks,
            "kind": kind,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
        }
        self._reset()

    def _reset(self) -> None:
        """An untrained network and an empty vocabulary, as `settings` describe them."""
        s = self.settings
        self.item_ids: npt.NDArray[np.str_] = np.asarray([], dtype=np.str_)
        self._index: dict[str, int] = {}
        torch.manual_seed(s["seed"])
        self._net = _Encoder(0, s["dim"], s["max_len"], s["blocks"], s["kind"])
        # Made at the first training step: a served copy never trains, and Adam's first use in
        # a process imports torch's compiler (2.7 s of an API process's GIL in a sampled run).
        self._optimiser: torch.optim.Adam | None = None
        self._weights_changed()
        self._rng = np.random.default_rng(s["seed"])

    # -- vocabulary ----------------------------------------------------------------------------

    def _learn_items(self, items: Iterable[str]) -> None:
        fresh = [i for i in dict.fromkeys(items) if i not in self._index]
        if not fresh:
            return
        for item in fresh:
            self._index[item] = len(self._index) + 1  # 0 is padding
        self.item_ids = np.asarray(list(self._index), dtype=np.str_)
        self._net.grow(len(self._index))
        self._optimiser = None  # its moments are per parameter; a grown embedding is a new one
        self._weights_changed()

    def _weights_changed(self) -> None:
        """Drop the numpy copies serving reads: `encode`'s forward pass for one state, and
        `aligned_batch`'s embeddings in another model's item order."""
        self._numpy: NumpySASRec | None = None
        self._aligned: AlignedItems | None = None

    def _ids(self, items: Iterable[str]) -> list[int]:
        get = self._index.get
        return [i for i in (get(item, 0) for item in items) if i]

    def _padded(self, rows: Sequence[Sequence[int]], length: int) -> torch.Tensor:
        out = np.zeros((len(rows), length), dtype=np.int64)
        for n, row in enumerate(rows):
            if row:
                out[n, -len(row) :] = row[-length:]
        return torch.from_numpy(out)

    # -- training ------------------------------------------------------------------------------

    def _windows(self, sequences: Sequence[Sequence[str]]) -> list[list[int]]:
        """Each sequence cut from its newest end into windows of ``max_len`` + 1 items."""
        size = self.settings["max_len"] + 1
        out = []
        for seq in sequences:
            ids = self._ids(seq)
            for end in range(len(ids), 1, -(size - 1)):
                out.append(ids[max(0, end - size) : end])
        return out

    def _epoch(self, windows: list[list[int]], last_only: bool = False) -> float:
        """One pass; with ``last_only``, the loss at each window's last item only."""
        self._net.train()
        self._weights_changed()  # the weights the numpy copies hold are about to change
        if self._optimiser is None:
            self._optimiser = torch.optim.Adam(self._net.parameters(), lr=self.settings["lr"])
        order = self._rng.permutation(len(windows))
        batch, total = self.settings["batch_size"], 0.0
        length = self.settings["max_len"] + 1
        for start in range(0, len(order), batch):
            rows = self._padded([windows[i] for i in order[start : start + batch]], length)
            inputs, targets = rows[:, :-1], rows[:, 1:]
            hidden = self._net(inputs)
            keep = targets > 0
            if last_only:
                keep[:, :-1] = False
            logits = hidden[keep] @ self._net.items.weight[1:].T
            loss = nn.functional.cross_entropy(logits, targets[keep] - 1)
            self._optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            self._optimiser.step()
            total += float(loss.detach()) * len(rows)
        return total / max(len(windows), 1)

    def fit(
        self,
        sequences: Sequence[Sequence[str]],
        epochs: int = 30,
        validate: Callable[[], float] | None = None,
        patience: int = 3,
    ) -> dict[str, Any]:
        """Train from scratch on ``sequences`` (each a user's items, oldest first). With
        ``validate`` (a score, higher is better, e.g. validation NDCG@10), stop once it has not
        improved for ``patience`` epochs and keep the best epoch's weights."""
        self._reset()
        self._learn_items(item for seq in sequences for item in seq)
        windows = self._windows(sequences)
        best, best_state, best_epoch, losses = -math.inf, None, 0, []
        for epoch in range(1, epochs + 1):
            losses.append(round(self._epoch(windows), 4))
            if validate is None:
                continue
            score = validate()
            if score > best:
                best, best_state, best_epoch = score, copy.deepcopy(self._net.state_dict()), epoch
            elif epoch - best_epoch >= patience:
                break
        if best_state is not None:
            self._net.load_state_dict(best_state)
            self._weights_changed()
        return {"epochs": len(losses), "best_epoch": best_epoch or len(losses), "loss": losses}

    def partial_fit(
        self, sequences: Sequence[Sequence[str]], steps: int = 1, last_only: bool = False
    ) -> float:
        """Train on a micro-batch of the stream (each sequence a user's latest items, oldest
        first), ``steps`` passes; items never seen before join the vocabulary. With
        ``last_only``, each sequence teaches its last item only (an example's target: the
        softmax over the catalogue at every position cost 50 times as much, and the stream's
        examples of one user overlap)."""
        self._learn_items(item for seq in sequences for item in seq)
        if last_only:
            size = self.settings["max_len"] + 1
            windows = [ids[-size:] for ids in (self._ids(seq) for seq in sequences) if len(ids) > 1]
        else:
            windows = self._windows(sequences)
        loss = 0.0
        for _ in range(steps):
            loss = self._epoch(windows, last_only) if windows else 0.0
        return loss

    # -- inference -----------------------------------------------------------------------------

    def encode(self, recents: Sequence[Sequence[str]]) -> npt.NDArray[np.float32]:
        """Each user's state from their latest items (newest first, as the feature store keeps
        them): the encoder's output at the newest known item; zeros when none is known."""
        rows = [list(reversed(self._ids(r)))[-self.settings["max_len"] :] for r in recents]
        if not rows:
            return np.zeros((0, self.settings["dim"]), dtype=np.float32)
        padded = self._padded(rows, self.settings["max_len"])
        if len(rows) == 1 and self.settings["kind"] == "sasrec":  # serving's one list at a time
            if self._numpy is None:
                self._numpy = NumpySASRec(self._net)
            return self._numpy.state(padded.numpy()[0])[None, :]
        if self._net.training:
            self._net.eval()
        with torch.inference_mode():
            hidden = self._net(padded)[:, -1]
        return np.asarray(hidden.numpy(), dtype=np.float32)

    def scores(self, state: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Every known item's score for a state, in `item_ids` order."""
        with torch.no_grad():
            weights = self._net.items.weight[1:].numpy()
        return np.asarray(weights @ state, dtype=np.float32)

    def index_of(self, item_ids: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
        """Each of ``item_ids``' position in `scores` plus one; 0 for an item not known."""
        get = self._index.get
        return np.fromiter((get(str(i), 0) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def aligned_scores(
        self, state: npt.NDArray[np.float32], index: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """`scores` in another model's item order (``index``: `index_of` its items); an item
        this model does not know scores the lowest of those it knows there (`AlignedItems`)."""
        row: npt.NDArray[np.float32] = self.aligned_batch(state[None, :], index)[0]
        return row

    def aligned_batch(
        self, states: npt.NDArray[np.float32], index: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """`aligned_scores` of many states, in one product (one per state was 12x slower); the
        embeddings gathered for ``index`` are kept while it is the same array."""
        if self._aligned is None or self._aligned.index is not index:
            with torch.no_grad():
                self._aligned = AlignedItems(self._net.items.weight.numpy(), index)
        return self._aligned.scores(states)

    def aligned(
        self, recents: Sequence[Sequence[str]], index: npt.NDArray[np.int64], chunk: int = 256
    ) -> list[npt.NDArray[np.float32] | None]:
        """Each user's `aligned_scores` from their latest items (newest first), ``chunk``
        users per forward pass; None for a user with no item the model knows."""
        out: list[npt.NDArray[np.float32] | None] = []
        for start in range(0, len(recents), chunk):
            states = self.encode(recents[start : start + chunk])
            rows = self.aligned_batch(states, index)
            out += [row if state.any() else None for row, state in zip(rows, states, strict=True)]
        return out

    def recommend(
        self,
        history: Mapping[str, float],
        k: int,
        exclude: Iterable[str] = (),
        recent: Sequence[str] = (),
    ) -> Ranked:
        state = self.encode([recent])[0]
        skip = set(exclude) | set(history)
        excl = (self._index[i] - 1 for i in skip if i in self._index)
        return top_k(self.item_ids, self.scores(state), k, excl)

    # -- artifact ------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        payload = {
            "state": self._net.state_dict(),
            "items": [str(i) for i in self.item_ids],
            "settings": self.settings,
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path: Path) -> Self:
        payload = torch.load(path, weights_only=True)
        model = cls(**payload["settings"])
        model._learn_items(payload["items"])
        model._net.load_state_dict(payload["state"])
        return model
