"""The settings of what streamrec learns: event weights and feature bounds, collaborative filtering
and its refits, serving's blend, the content models. Part of `recommender.settings.Settings`."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from recommender.types import EVENT_TYPES

#: Confidence weight of one event of each type, before a rating scales it.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "cart": 4.0,
    "purchase": 8.0,
    "rating": 5.0,
    "review": 3.0,
}


#: The largest weight of one event: a weight of 1e300 made the store's sums infinite.
MAX_EVENT_WEIGHT = 1000.0


class ModelSettings(BaseSettings):
    # Features
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="confidence per event type (JSON)",
    )
    rating_scale: float = Field(
        5.0, gt=0, description="a rating's weight is `weights.rating * value / rating_scale`"
    )
    recent_items: int = Field(50, ge=1, le=1000, description="recent interactions kept per user")
    user_ttl_s: int = Field(
        90 * 86400, ge=60, description="idle users' features expire after this (90 d)"
    )
    dedupe_ttl_s: int = Field(
        7 * 86400, ge=60, description="replays within this window are dropped (7 d)"
    )
    max_event_ahead_s: int = Field(
        300,
        ge=0,
        description=(
            "an event stamped further ahead of the worker's clock is dead-lettered (a "
            "producer's clock fault must not move the stream clock and empty every window)"
        ),
    )

    # Collaborative filtering
    als_factors: int = Field(64, ge=2, le=1024, description="ALS latent factors")
    als_regularization: float = Field(10.0, ge=0, description="ALS L2 regularisation")
    als_iterations: int = Field(15, ge=1, le=200, description="ALS sweeps per full fit")
    als_alpha: float = Field(0.25, gt=0, description="confidence = 1 + alpha * weight")
    als_min_events: int = Field(1000, ge=1, description="events needed before the first fit")
    recency_half_life_s: float = Field(
        0.0,
        ge=0,
        description=(
            "an interaction's confidence halves every this many seconds of age, counted back "
            "from the user's newest event, in every refit and fold-in; while set, each item's "
            "newest event time is kept per user (0: no decay, nothing kept; see docs/models.md)"
        ),
    )
    knn_neighbours: int = Field(
        100,
        ge=0,
        le=1000,
        description=(
            "nearest items (cosine of interaction columns) kept per item at each refit, "
            "stored with the model; 0: none"
        ),
    )
    serve_knn_weight: float = Field(
        0.5,
        ge=0,
        description=(
            "weight of the neighbours of the user's latest items against the ALS score "
            "(both scaled to a maximum of 1)"
        ),
    )
    serve_candidates: int = Field(
        100,
        ge=0,
        le=1000,
        description=(
            "candidates cached per user for requests of up to this many items (0: every "
            "request scores the catalogue)"
        ),
    )
    serve_recent_items: int = Field(
        10, ge=0, le=50, description="how many of the user's latest items the blend looks at"
    )
    serve_recent_decay: float = Field(
        0.8, gt=0, le=1, description="the r-th latest item counts `decay ** r`"
    )
    serve_new_item_slots: int = Field(
        1,
        ge=0,
        le=10,
        description=(
            "places at the end of a user's list kept for items newer than the fit (placed"
            " from content, or folded in from their first users); 0: none"
        ),
    )
    serve_new_item_within: int = Field(
        100,
        ge=1,
        description=(
            "a new item takes such a place only if it is among the user's this many "
            "closest items (cosine; on MovieLens, 89% of held-out movies have a user for "
            "whom they are, 77% within 50)"
        ),
    )
    refit_growth: float = Field(
        0.2, gt=0, description="refit when events grew by this fraction since the last fit"
    )
    refit_idle_s: float = Field(
        2.0, gt=0, description="refit when the stream has been quiet this long"
    )
    refit_min_interval_s: float = Field(
        10.0,
        ge=0,
        description=(
            "no growth-triggered refit sooner than this after the last (keeps bulk loads'"
            " CPU for ingestion)"
        ),
    )
    refit_interval_s: float = Field(
        300.0, gt=0, description="refit at least this often while events arrive"
    )
    quality_gate_margin: float = Field(
        0.01,
        ge=0,
        le=1,
        description=(
            "a refit whose holdout NDCG@10 trails the served version's by more is held "
            "back as the challenger"
        ),
    )
    quality_gate_min_users: int = Field(
        20,
        ge=1,
        description="with fewer users active since the served model was fitted, there is no gate",
    )
    models_kept: int = Field(
        20,
        ge=1,
        description=(
            "model versions kept on disk per family: the newest this many, the this many most "
            "recently served (what a rollback walks back to), the served one and the "
            "challenger; the rest are deleted at each save"
        ),
    )

    # Content models (text, sentiment, image)
    content_models: bool = Field(
        True,
        description=(
            "train the text, sentiment and image models from the stream and use their "
            "predictions (false: none of it, and no torch in the worker)"
        ),
    )
    review_positive_weight: float = Field(
        8.0,
        ge=0,
        description=(
            "a review's weight is this x max(0, 2p - 1), p its probability of being "
            "positive, once a sentiment model serves (before: `event_weights.review`)"
        ),
    )
    predicted_category_min_p: float = Field(
        0.3,
        gt=0,
        le=1,
        description=(
            "predicted categories kept for an item: at least this sure (at most three; "
            "the surest one if none is)"
        ),
    )
    content_min_examples: int = Field(
        200, ge=10, description="labelled examples a content model waits for before its first fit"
    )
    content_first_fit_epochs: int = Field(5, ge=1, le=50, description="epochs of that first fit")
    content_publish_every: int = Field(
        1000, ge=10, description="examples learned between two versions of a content model"
    )
    content_replay_size: int = Field(
        5000,
        ge=100,
        description=(
            "examples a content model replays from, a uniform sample of all it saw (so it"
            " does not forget)"
        ),
    )
    content_holdout_size: int = Field(
        1000, ge=50, description="examples kept out of training to judge each version (one in ten)"
    )
    content_batch_size: int = Field(
        32, ge=1, le=1024, description="new examples per training step (with as many replayed)"
    )

    # The sequential family (SASRec)
    sequential_weight: float = Field(
        0.5,
        ge=0,
        le=10,
        description=(
            "weight of the sequential family's scores in a user's recommendations, against the "
            "chain's (each scaled to a maximum of 1; tuned in `bench quality`); 0: the family "
            "is neither trained nor served. Trained by the content trainer "
            "(`STREAMREC_CONTENT_MODELS`)"
        ),
    )
    sequential_first_fit_epochs: int = Field(
        20, ge=1, le=100, description="epochs of the sequential family's first fit"
    )

    @field_validator("event_weights")
    @classmethod
    def _weights_known(cls, value: dict[str, float]) -> dict[str, float]:
        missing = set(EVENT_TYPES) - set(value)
        if missing:
            raise ValueError(f"event_weights lacks a weight for {sorted(missing)}")
        if any(not 0 <= w <= MAX_EVENT_WEIGHT for w in value.values()):
            raise ValueError(f"event_weights must be from 0 to {MAX_EVENT_WEIGHT:g}")
        return value
