"""What serving is configured by: a part of `Settings`, whose defaults are `Settings`' own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recommender.settings import Settings


def _default(name: str) -> Any:
    return field(default=Settings.model_fields[name].default)


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """The serving knobs, named as in `Settings` less their prefix (`STREAMREC_SERVE_*`, and the
    API's checks and caches); `ServingConfig.of(settings)` reads them from a settings object."""

    pointer_check_s: float = _default("api_model_check_s")  # how often the pointer is read
    title_ttl_s: float = _default("api_title_cache_s")  # titles and kept answers live this long
    knn_weight: float = _default("serve_knn_weight")  # the recent items' neighbours vs ALS
    recent_items: int = _default("serve_recent_items")
    recent_decay: float = _default("serve_recent_decay")
    new_item_slots: int = _default("serve_new_item_slots")
    new_item_within: int = _default("serve_new_item_within")
    challenger_share: float = _default("ab_challenger_share")
    candidates: int = _default("serve_candidates")  # cached per user (0: computed per request)

    @classmethod
    def of(cls, settings: Settings) -> ServingConfig:
        return cls(
            pointer_check_s=settings.api_model_check_s,
            title_ttl_s=settings.api_title_cache_s,
            knn_weight=settings.serve_knn_weight,
            recent_items=settings.serve_recent_items,
            recent_decay=settings.serve_recent_decay,
            new_item_slots=settings.serve_new_item_slots,
            new_item_within=settings.serve_new_item_within,
            challenger_share=settings.ab_challenger_share,
            candidates=settings.serve_candidates,
        )
