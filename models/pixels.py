"""Item images as pixels: decoded with Pillow (there is no CPU torchvision here), grey, 28 x 28.

Kept apart from the image model (no torch here), so that the record schemas can check that an image
decodes without loading a neural network library.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from models.errors import ModelError


class ImageDecodeError(ModelError):
    """Bytes that claim to be an image but do not decode."""


SIDE = 28
#: Images larger than this many pixels are refused before they are decoded (a decompression
#: bomb guard well below Pillow's own, which only warns up to twice its 89 million).
MAX_PIXELS = 16_777_216  # 4096 x 4096


def decode_image(data: bytes | str) -> npt.NDArray[np.uint8]:
    """PNG or JPEG bytes (or their base64) as a 28 x 28 grey image; `ImageDecodeError` with the
    reason when they do not decode."""
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageDecodeError("image is not valid base64") from exc
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns up to twice its limit: here an image over it is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                grey = img.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow checks the header's size at open: nothing was decoded.
        raise ImageDecodeError(f"image of more than {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(f"image does not decode: {exc}") from None
    return np.asarray(grey, dtype=np.uint8)


def encode_png(pixels: npt.NDArray[np.uint8]) -> bytes:
    """A grey image as PNG bytes (how the demo and the tests publish Fashion-MNIST)."""
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()
