"""How one content model learns from its stream: test, then train, on micro-batches mixed with a
replay buffer (so it does not forget), with a rolling holdout that judges each new version against
the served one through the shared lifecycle.

Pure of I/O but for `publish`: examples in, steps taken, versions out. `content_trainer` feeds it
from Redis; the benchmark feeds it from data sets.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from recommender.lifecycle.publishing import Gate, GateResult, ModelLifecycle
from recommender.lifecycle.served import ServedModelCache


class ContentClassifier(Protocol):
    """What a learner drives: `models.classifier.ContentClassifier`, and the sequential family
    as a next-item classifier (`models.next_item`)."""

    @property
    def kind(self) -> str: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def trained_examples(self) -> int: ...

    def predict_proba(self, inputs: Sequence[Any]) -> npt.NDArray[np.float32]: ...
    def fit(
        self,
        inputs: Sequence[Any],
        targets: Sequence[Any],
        epochs: int = ...,
        batch_size: int = ...,
    ) -> None: ...
    def update(self, inputs: Sequence[Any], targets: Sequence[Any]) -> float: ...


#: One example in ten (by its key) is held out to judge versions, never trained on.
HOLDOUT_ONE_IN = 10
#: Fewer held-out examples than this: no gate (the first versions of a new stream).
GATE_MIN_EXAMPLES = 20
#: Examples remembered to skip a redelivered one.
DEDUPE_MEMORY = 100_000


@dataclass(frozen=True, slots=True)
class Example:
    key: str  # what the example is about (an item id, a review's event): dedupe and holdout
    x: Any  # the model's input (a text, pixels)
    y: Any  # its label (a label set, a label, positive or not)
    owner: str | None = None  # the pseudonym whose personal data it is, if anyone's


def score(model: ContentClassifier, examples: Sequence[Example]) -> float:
    """The family's metric: P@1 (multi-label: the top label is one of the item's), ROC AUC
    (binary; accuracy when one class is missing), accuracy (single label)."""
    if not examples:
        return 0.0
    probs = model.predict_proba([e.x for e in examples])
    if model.kind == "binary":
        y = np.asarray([bool(e.y) for e in examples])
        p = probs[:, 0]
        if y.all() or not y.any():
            return float(np.mean((p >= 0.5) == y))
        ranks = np.argsort(np.argsort(p)) + 1
        pos = int(y.sum())
        return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))
    top = [model.labels[i] for i in probs.argmax(axis=1)]
    if model.kind == "multi":
        return float(np.mean([t in e.y for t, e in zip(top, examples, strict=True)]))
    return float(np.mean([t == e.y for t, e in zip(top, examples, strict=True)]))


def metric_name(model_kind: str) -> str:
    return {"multi": "p@1", "binary": "auc", "single": "accuracy"}[model_kind]


def _hits(model: ContentClassifier, examples: Sequence[Example]) -> list[bool]:
    """Test before train: whether the current model got each new example right."""
    probs = model.predict_proba([e.x for e in examples])
    if model.kind == "binary":
        return [bool(p >= 0.5) == bool(e.y) for p, e in zip(probs[:, 0], examples, strict=True)]
    top = [model.labels[i] for i in probs.argmax(axis=1)]
    if model.kind == "multi":
        return [t in e.y for t, e in zip(top, examples, strict=True)]
    return [t == e.y for t, e in zip(top, examples, strict=True)]


@dataclass
class LearnerConfig:
    min_examples: int = 200
    first_fit_epochs: int = 5
    publish_every: int = 1000
    replay_size: int = 5000
    holdout_size: int = 1000
    batch_size: int = 32
    gate_margin: float = 0.01


@dataclass
class Learner:
    """One family's model learning from a stream of examples."""

    family: str
    make_model: Callable[[], ContentClassifier]
    config: LearnerConfig = field(default_factory=LearnerConfig)
    seed: int = 0
    model: ContentClassifier | None = None
    replay: list[Example] = field(default_factory=list)
    holdout: deque[Example] = field(default_factory=deque)
    pending: list[Example] = field(default_factory=list)
    prequential: deque[bool] = field(default_factory=lambda: deque(maxlen=1000))
    tested: int = 0
    correct: int = 0
    learned_since_publish: int = 0
    versions: int = 0  # published by this learner
    _seen_total: int = 0
    _keys: dict[str, None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.holdout = deque(maxlen=self.config.holdout_size)
        self._rng = np.random.default_rng(self.seed)

    @property
    def prequential_accuracy(self) -> float | None:
        return float(np.mean(self.prequential)) if self.prequential else None

    def add(self, examples: Sequence[Example]) -> int:
        """Take new examples (a redelivered one is skipped): one in ten to the holdout, the rest
        tested by the current model, then queued for training. Returns how many were new."""
        new = 0
        fresh: list[Example] = []
        for ex in examples:
            if ex.key in self._keys:
                continue
            self._keys[ex.key] = None
            if len(self._keys) > DEDUPE_MEMORY:
                self._keys.pop(next(iter(self._keys)))
            new += 1
            if zlib.crc32(ex.key.encode()) % HOLDOUT_ONE_IN == 0:
                self.holdout.append(ex)
            else:
                fresh.append(ex)
        if self.model is not None and fresh:
            hits = _hits(self.model, fresh)
            self.prequential.extend(hits)
            self.tested += len(hits)
            self.correct += sum(hits)
        self.pending += fresh
        return new

    def _remember(self, ex: Example) -> None:
        """Reservoir sampling: every example seen has the same chance to be in the buffer."""
        self._seen_total += 1
        if len(self.replay) < self.config.replay_size:
            self.replay.append(ex)
            return
        j = int(self._rng.integers(0, self._seen_total))
        if j < self.config.replay_size:
            self.replay[j] = ex

    def train(self, max_steps: int | None = None) -> int:
        """Learn from what is pending: the first fit once there are `min_examples`, then one
        step per micro-batch of new examples mixed with as many replayed ones. Returns the
        number of examples learned."""
        c = self.config
        if self.model is None:
            if len(self.pending) + len(self.replay) < c.min_examples:
                return 0
            for ex in self.pending:
                self._remember(ex)
            self.pending = []
            model = self.make_model()
            model.fit(
                [e.x for e in self.replay],
                [e.y for e in self.replay],
                epochs=c.first_fit_epochs,
                batch_size=c.batch_size,
            )
            self.model = model
            self.learned_since_publish += len(self.replay)
            return len(self.replay)
        learned, steps = 0, 0
        while self.pending and (max_steps is None or steps < max_steps):
            batch, self.pending = self.pending[: c.batch_size], self.pending[c.batch_size :]
            mixed = list(batch)
            if self.replay:
                idx = self._rng.choice(len(self.replay), size=min(len(batch), len(self.replay)))
                mixed += [self.replay[i] for i in idx]
            self.model.update([e.x for e in mixed], [e.y for e in mixed])
            for ex in batch:
                self._remember(ex)
            learned += len(batch)
            steps += 1
        self.learned_since_publish += learned
        return learned

    def due(self) -> bool:
        """A version is due after the first fit, then every `publish_every` examples learned."""
        if self.model is None or self.learned_since_publish == 0:
            return False
        return self.versions == 0 or self.learned_since_publish >= self.config.publish_every

    async def publish(
        self, lifecycle: ModelLifecycle[Any], served: ServedModelCache[Any]
    ) -> tuple[str, bool] | None:
        """A new version, judged on the holdout against the served one, through the lifecycle.
        Returns (version, served), or None when nothing new was learned."""
        if self.model is None or self.learned_since_publish == 0:
            return None
        metric = metric_name(self.model.kind)
        holdout = list(self.holdout)
        current, served_model = await served.current()
        gate = Gate(note="nothing served before")
        if current is not None and served_model is not None:
            if len(holdout) < GATE_MIN_EXAMPLES:
                gate = Gate(
                    note=f"{len(holdout)} held-out examples (fewer than {GATE_MIN_EXAMPLES})"
                )
            else:
                gate = Gate(
                    GateResult(
                        score(self.model, holdout),
                        score(served_model, holdout),
                        self.config.gate_margin,
                        len(holdout),
                        current.version,
                        metric,
                    )
                )
        meta = {
            "examples": self.model.trained_examples,
            "labels": len(self.model.labels),
            "held_out_examples": len(holdout),
            f"prequential_{metric}": _round(self.prequential_accuracy),
            "trained_until": int(time.time() * 1000),
        }
        self.learned_since_publish = 0
        self.versions += 1
        return await lifecycle.publish(self.model, meta, gate)

    def forget(self, owners: set[str]) -> int:
        """Drop every example of these users (they were erased); returns how many."""
        if not owners:
            return 0
        before = len(self.replay) + len(self.holdout) + len(self.pending)
        self.replay = [e for e in self.replay if e.owner not in owners]
        self.pending = [e for e in self.pending if e.owner not in owners]
        kept = [e for e in self.holdout if e.owner not in owners]
        self.holdout.clear()
        self.holdout.extend(kept)
        return before - len(self.replay) - len(self.holdout) - len(self.pending)

    def owners(self) -> set[str]:
        return {
            e.owner for e in (*self.replay, *self.holdout, *self.pending) if e.owner is not None
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
