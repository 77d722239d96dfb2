"""Every reason an answer gives for an item, in one place: what a user reads beside it."""

from __future__ import annotations

CF = "people with similar taste liked it"
NEW = "new, and close to your taste"
POPULAR = "popular right now"
SESSION = "often next after what you just viewed"
SIMILAR = "liked by the same people"
TRENDING = "trending in the last hour"


def popular_in_window(window: str) -> str:
    return f"popular in the last {window}"


def popular_in(categories: str) -> str:
    """Popular in a category the request named, or in a new item's categories."""
    return f"popular in {categories}"


def affinity(category: str) -> str:
    return f"popular in {category}, which you like"


def because(title: str) -> str:
    return f"because you liked {title}"


def new_like(title: str) -> str:
    """A brand-new item placed from its content, near a known one."""
    return f"new, like {title}"
