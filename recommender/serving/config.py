"""What serving is configured by: a part of `Settings`, whose defaults are `Settings`' own."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from recommender.settings import Settings

#: Each knob of serving, and the setting it is read from (`STREAMREC_` + the name, upper case).
SETTING_OF = {
    "pointer_check_s": "api_model_check_s",  # how often the served-model pointer is read
    "title_ttl_s": "api_title_cache_s",  # cards and kept answers live this long
    "knn_weight": "serve_knn_weight",  # the recent items' neighbours against the ALS score
    "recent_items": "serve_recent_items",
    "recent_decay": "serve_recent_decay",
    "new_item_slots": "serve_new_item_slots",
    "new_item_within": "serve_new_item_within",
    "challenger_share": "ab_challenger_share",
    "candidates": "serve_candidates",  # cached per user (0: computed per request)
    "sequential_weight": "sequential_weight",  # the sequential family against the chain
}


def _default(name: str) -> Any:
    return field(default=Settings.model_fields[SETTING_OF[name]].default)


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """The serving knobs (`SETTING_OF`); `ServingConfig.of(settings)` reads them from a
    settings object, and each default is that setting's."""

    pointer_check_s: float = _default("pointer_check_s")
    title_ttl_s: float = _default("title_ttl_s")
    knn_weight: float = _default("knn_weight")
    recent_items: int = _default("recent_items")
    recent_decay: float = _default("recent_decay")
    new_item_slots: int = _default("new_item_slots")
    new_item_within: int = _default("new_item_within")
    challenger_share: float = _default("challenger_share")
    candidates: int = _default("candidates")
    sequential_weight: float = _default("sequential_weight")

    @classmethod
    def of(cls, settings: Settings) -> ServingConfig:
        return cls(**{f.name: getattr(settings, SETTING_OF[f.name]) for f in fields(cls)})
