"""Turning untrusted image bytes into PIL images, or a clear error."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from recommender.errors import InvalidArgument

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})


def decode_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode one encoded image; `field` names it in the error (e.g. "images[3]")."""
    if not data:
        raise InvalidArgument(field, "image is empty: send JPEG, PNG or WebP bytes")
    try:
        # Pillow's own bomb guard is process-wide state; check the header size here instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise InvalidArgument(field, f"image format {image.format} is not accepted: send JPEG, PNG or WebP")
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidArgument(
                    field, f"image is {width}x{height}, over the {max_pixels} pixel limit: downscale it first")
            image.load()
            if image.mode != "RGB":  # here, so an odd mode fails as this image's error, not in preprocessing
                image = image.convert("RGB")
    except InvalidArgument:
        raise
    except UnidentifiedImageError as error:
        raise InvalidArgument(field, "bytes are not a recognised image: send JPEG, PNG or WebP") from error
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise SyntaxError, struct.error, EOFError...
        # on corrupt files: whatever the decoder trips on, the bytes are the caller's to fix.
        reason = f"{type(error).__name__}: {error}"[:200]
        raise InvalidArgument(field, f"cannot decode image ({reason}): send JPEG, PNG or WebP bytes") from error
    return image
