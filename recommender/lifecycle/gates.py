"""A quality gate's outcome: a new version against the served one on the same holdout, or why
there was nothing to judge on. Written into the version's metadata and the decision log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GateResult:
    """A challenger against the served version on the same holdout."""

    challenger_score: float
    served_score: float
    margin: float
    users: int
    against: str  # the served version it was judged against
    metric: str = "ndcg@10"

    @property
    def passed(self) -> bool:
        return self.challenger_score >= self.served_score - self.margin

    # The CF gate's names, kept from before families existed.
    @property
    def challenger_ndcg(self) -> float:
        return self.challenger_score

    @property
    def served_ndcg(self) -> float:
        return self.served_score

    def as_metadata(self) -> dict[str, Any]:
        return {
            f"holdout_{self.metric}": round(self.challenger_score, 5),
            f"served_holdout_{self.metric}": round(self.served_score, 5),
            "gate_margin": self.margin,
            "gate_users": self.users,
            "gate_against": self.against,
            "gate_passed": self.passed,
            "gate_metric": self.metric,
        }

    def describe(self) -> str:
        verdict = "passed" if self.passed else f"failed (margin {self.margin:g})"
        return (
            f"{self.metric} {self.challenger_score:.4f} vs {self.served_score:.4f} served, "
            f"{self.users:,} users: {verdict}"
        )


@dataclass(frozen=True, slots=True)
class Gate:
    """The gate's outcome: a result, or why there was nothing to judge on."""

    result: GateResult | None = None
    note: str = ""

    def as_metadata(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result.as_metadata()
        return {"gate": f"no gate: {self.note}"} if self.note else {}
