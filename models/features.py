"""Turning text into what the neural content models read: word tokens (with a vocabulary built
from the data), and hashed word and character n-grams (no vocabulary: new words on the stream
need none).

The hash is CRC-32, not Python's `hash`, which differs between processes: a model saved by the
trainer must find the same buckets in the API.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

#: HTML line breaks that review exports carry, and other tags.
_TAGS = re.compile(r"<[^>]{0,40}>")
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)
PAD, UNK = 0, 1


def normalise(text: str) -> str:
    """Lower case, NFKC (full-width letters and ligatures fold), tags and extra spaces gone."""
    text = unicodedata.normalize("NFKC", _TAGS.sub(" ", text)).lower()
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Words and punctuation marks; letters of any script, digits, emoji each count."""
    return _WORDS.findall(normalise(text))


def _bucket(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8", "surrogatepass")) % buckets


def hashed_ngrams(
    text: str, buckets: int, word_ngrams: int = 2, char_ngrams: tuple[int, ...] = ()
) -> list[int]:
    """Bucket ids of the text's word 1..``word_ngrams``-grams and character n-grams (within
    ` word ` boundaries), for a bag-of-n-grams layer. Never empty: an empty text has one bucket
    of its own."""
    tokens = words(text)
    grams = [f"w:{t}" for t in tokens]
    for n in range(2, word_ngrams + 1):
        grams += [f"w{n}:" + " ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    for n in char_ngrams:
        for t in tokens:
            padded = f" {t} "
            grams += [f"c:{padded[i : i + n]}" for i in range(len(padded) - n + 1)]
    return [_bucket(g, buckets) for g in grams] or [_bucket("<empty>", buckets)]


def bag(
    texts: Sequence[str], buckets: int, word_ngrams: int = 2, char_ngrams: tuple[int, ...] = ()
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(flat bucket ids, offsets): the input of `torch.nn.EmbeddingBag`."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        ids += hashed_ngrams(text, buckets, word_ngrams, char_ngrams)
    return np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def build_vocabulary(texts: Iterable[str], size: int, min_count: int = 2) -> list[str]:
    """The ``size`` most frequent words seen at least ``min_count`` times (index 0 is padding,
    1 unknown)."""
    counts = Counter(w for text in texts for w in words(text))
    common = [w for w, c in counts.most_common(size) if c >= min_count]
    return ["<pad>", "<unk>", *common]


def token_ids(texts: Sequence[str], index: dict[str, int], max_len: int) -> npt.NDArray[np.int64]:
    """Word ids, padded or cut to ``max_len`` (at least one token, so that an empty text still
    has a sequence)."""
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for row, text in enumerate(texts):
        ids = [index.get(w, UNK) for w in words(text)[:max_len]] or [UNK]
        out[row, : len(ids)] = ids
    return out


def char_ids(texts: Sequence[str], index: dict[str, int], max_len: int) -> npt.NDArray[np.int64]:
    """Character ids (0 padding, 1 unknown), padded or cut to ``max_len``."""
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for row, text in enumerate(texts):
        ids = [index.get(ch, UNK) for ch in normalise(text)[:max_len]] or [UNK]
        out[row, : len(ids)] = ids
    return out


def item_text(title: str, text: str | None = None) -> str:
    """What the text model reads of an item."""
    return f"{title}. {text}" if text else title
