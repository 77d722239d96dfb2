"""The contract of streamrec's neural content models, and the PyTorch plumbing they share.

Every content model (text, sentiment, image) is a `ContentClassifier`: `fit` on a batch,
`update` on a micro-batch (the stream), `predict_proba`, `embed` (the features its last layer
reads: what places a new item in the CF model's item space), `save` as one torch file holding the
`state_dict` and the preprocessing (vocabulary, labels, settings) as plain lists and numbers, and
`load` with `weights_only=True`, so that loading a model file never runs code.

The label set grows as new labels arrive: the output layer gains rows, the rest is kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.errors import ModelError

Target = Any  # a label set (multi-label), a label (single), or a 0/1 (binary)


class ContentModelError(ModelError):
    """An input the model cannot read (an image that does not decode, ...)."""


class GrowingHead(nn.Module):
    """The output layer; `grow` adds rows for new labels and keeps the trained ones."""

    def __init__(self, features: int, labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, max(labels, 1))

    def grow(self, labels: int) -> None:
        old = self.linear
        if labels <= old.out_features:
            return
        new = nn.Linear(old.in_features, labels)
        with torch.no_grad():
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
        self.linear = new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


class WideBag(nn.Module):
    """A linear model over hashed n-grams, TF-IDF weighted and normalised per text: the "wide"
    half of a wide-and-deep network. It learns what a TF-IDF logistic regression learns, inside
    the same network and from the same stream; the deep half adds what order and composition
    say. The IDF (`set_idf`, from the first batch) is a buffer, saved with the weights."""

    def __init__(self, buckets: int, labels: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, max(labels, 1), mode="sum")
        nn.init.zeros_(self.bag.weight)
        self.idf: torch.Tensor
        self.register_buffer("idf", torch.ones(buckets))

    def set_idf(self, ids: torch.Tensor, offsets: torch.Tensor) -> None:
        """Inverse document frequency of each bucket over the texts ``ids`` / ``offsets``."""
        texts = len(offsets)
        doc = torch.repeat_interleave(
            torch.arange(texts), torch.diff(offsets, append=torch.tensor([len(ids)]))
        )
        seen = torch.unique(doc * self.buckets + ids) % self.buckets
        df = torch.bincount(seen, minlength=self.buckets).float()
        self.idf.copy_(torch.log((1 + texts) / (1 + df)) + 1)

    def grow(self, labels: int) -> None:
        old = self.bag.weight
        if labels <= old.shape[1]:
            return
        new = nn.EmbeddingBag(self.buckets, labels, mode="sum")
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.shape[1]] = old
        self.bag = new

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        weights = self.idf[ids]
        doc = torch.repeat_interleave(
            torch.arange(len(offsets)), torch.diff(offsets, append=torch.tensor([len(ids)]))
        )
        norms = torch.zeros(len(offsets)).index_add_(0, doc, weights * weights).sqrt()
        out: torch.Tensor = self.bag(ids, offsets, per_sample_weights=weights / norms[doc])
        return out


class ContentClassifier(ABC):
    """A PyTorch classifier over one kind of content, trainable batch by batch.

    Subclasses say what the input is (`encode`), build the network (`build`), and name the
    preprocessing that must travel with the weights (`extras` / `restore`).
    """

    name: str
    artifact: ClassVar[str] = "model.pt"
    #: "multi" (several labels per example), "single" (one), or "binary" (positive or not).
    kind: ClassVar[str] = "single"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, seed: int = 0, **config: Any) -> None:
        self.config: dict[str, Any] = {**self.defaults, **config}
        self.seed = seed
        self.labels: list[str] = ["positive"] if self.kind == "binary" else []
        self.net: nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self.trained_examples = 0

    # --- what a subclass provides -------------------------------------------------------------
    def prepare(self, inputs: Sequence[Any]) -> None:  # noqa: B027 (optional hook)
        """Build the preprocessing (a vocabulary) from the first batch it is fitted on."""

    @abstractmethod
    def build(self) -> nn.Module:
        """The network for `self.labels`; its `forward(*encode(x))` returns (logits, features)."""

    @abstractmethod
    def encode(self, inputs: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        """Inputs as the network's tensors."""

    def extras(self) -> dict[str, Any]:
        """Preprocessing saved with the weights (plain lists, strings and numbers only)."""
        return {}

    def restore(self, extras: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """The inverse of `extras`."""

    def param_groups(self, net: nn.Module) -> list[dict[str, Any]]:
        """Optimiser parameter groups: a network's wide half (its `WideBag`) learns at
        `wide_lr` (a linear model over sparse n-grams wants a larger step than the deep half)."""
        wide = [p for m in net.modules() if isinstance(m, WideBag) for p in m.parameters()]
        if not wide or "wide_lr" not in self.config:
            return [{"params": list(net.parameters())}]
        deep = [p for p in net.parameters() if all(p is not w for w in wide)]
        return [{"params": deep}, {"params": wide, "lr": float(self.config["wide_lr"])}]

    # --- shared ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.net is not None

    def _targets(self, targets: Sequence[Target]) -> torch.Tensor:
        if self.kind == "binary":
            return torch.tensor([[float(bool(t))] for t in targets], dtype=torch.float32)
        index = {label: i for i, label in enumerate(self.labels)}
        if self.kind == "multi":
            y = torch.zeros((len(targets), len(self.labels)), dtype=torch.float32)
            for row, labels in enumerate(targets):
                for label in labels:
                    y[row, index[label]] = 1.0
            return y
        return torch.tensor([index[t] for t in targets], dtype=torch.long)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "single":
            return nn.functional.cross_entropy(logits, y)
        return nn.functional.binary_cross_entropy_with_logits(logits, y)

    def _learn_labels(self, targets: Sequence[Target]) -> None:
        if self.kind == "binary":
            return
        seen = {t for labels in targets for t in labels} if self.kind == "multi" else set(targets)
        new = sorted(seen - set(self.labels))
        if not new:
            return
        self.labels += new
        if self.net is not None:
            for module in self.net.modules():
                if isinstance(module, GrowingHead | WideBag):
                    module.grow(len(self.labels))
            self._optimizer = None  # new parameters: a fresh optimiser

    def _ensure_net(self, inputs: Sequence[Any]) -> nn.Module:
        if self.net is None:
            torch.manual_seed(self.seed)
            self.prepare(inputs)
            self.net = self.build()
            wide = [m for m in self.net.modules() if isinstance(m, WideBag)]
            if wide:
                encoded = self.encode(inputs)
                for module in wide:
                    module.set_idf(encoded[-2], encoded[-1])
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(
                self.param_groups(self.net), lr=float(self.config.get("lr", 1e-3))
            )
        return self.net

    def update(self, inputs: Sequence[Any], targets: Sequence[Target]) -> float:
        """One optimiser step on a micro-batch; returns its loss. New labels grow the head."""
        if not inputs:
            return 0.0
        self._learn_labels(targets)
        net = self._ensure_net(inputs)
        assert self._optimizer is not None
        net.train()
        logits, _ = net(*self.encode(inputs))
        loss = self._loss(logits, self._targets(targets))
        self._optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        self._optimizer.step()
        self.trained_examples += len(inputs)
        return float(loss.detach())

    def fit(
        self,
        inputs: Sequence[Any],
        targets: Sequence[Target],
        epochs: int = 5,
        batch_size: int = 64,
    ) -> None:
        """Train from scratch (or on) for ``epochs`` passes over the batch, shuffled."""
        self._learn_labels(targets)
        self._ensure_net(inputs)
        rng = np.random.default_rng(self.seed)
        decay = float(self.config.get("lr_decay", 1.0))
        for epoch in range(epochs):
            order = rng.permutation(len(inputs))
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                self.update([inputs[i] for i in idx], [targets[i] for i in idx])
            if decay != 1.0 and epoch < epochs - 1 and self._optimizer is not None:
                for group in self._optimizer.param_groups:
                    group["lr"] *= decay

    def _forward(self, inputs: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net is None:
            raise ContentModelError(f"the {self.name} model has not been trained")
        self.net.eval()
        with torch.no_grad():
            logits, features = self.net(*self.encode(inputs))
        return logits, features

    def predict_proba(self, inputs: Sequence[Any], chunk: int = 512) -> npt.NDArray[np.float32]:
        """[n, len(labels)] probabilities: independent (multi-label, binary) or a softmax."""
        if not inputs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        parts = []
        for start in range(0, len(inputs), chunk):
            logits, _ = self._forward(inputs[start : start + chunk])
            probs = logits.softmax(-1) if self.kind == "single" else logits.sigmoid()
            parts.append(probs.numpy().astype(np.float32))
        return np.concatenate(parts)

    def embed(self, inputs: Sequence[Any], chunk: int = 512) -> npt.NDArray[np.float32]:
        """The features the output layer reads, one row per input."""
        parts = [
            self._forward(inputs[s : s + chunk])[1].numpy() for s in range(0, len(inputs), chunk)
        ]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)

    def save(self, path: Path) -> None:
        if self.net is None:
            raise ContentModelError(f"the {self.name} model has not been trained")
        torch.save(
            {
                "name": self.name,
                "config": self.config,
                "seed": self.seed,
                "labels": list(self.labels),
                "trained_examples": self.trained_examples,
                "extras": self.extras(),
                "state": self.net.state_dict(),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        saved = torch.load(path, weights_only=True)
        if saved.get("name") != cls.name:
            raise ContentModelError(f"{path} holds a {saved.get('name')!r} model, not {cls.name!r}")
        model = cls(seed=int(saved["seed"]), **saved["config"])
        model.labels = list(saved["labels"])
        model.trained_examples = int(saved["trained_examples"])
        model.restore(saved["extras"])
        model.net = model.build()
        model.net.load_state_dict(saved["state"])
        return model
