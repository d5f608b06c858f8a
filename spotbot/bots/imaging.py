"""Decoding image assets safely: every way an image can be bad becomes a one-line AssetError."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from spotbot.core.errors import AssetError

_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
]


def sniff_format(data: bytes) -> str | None:
    """The image format the first bytes announce, whether or not the rest is sound."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


# Far above any photo or scan, far below what would exhaust a worker's memory when decoded.
MAX_PIXELS = 80_000_000


def decode_image(data: bytes, mode: str = "RGB") -> Image.Image:
    """A fully loaded, upright image in `mode`, or AssetError saying what is wrong with the bytes."""
    if not data:
        raise AssetError("empty file (0 bytes)")
    fmt: str | None = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format
                width, height = probe.size
                if width * height > MAX_PIXELS:
                    raise AssetError(
                        f"image too large: {width}x{height} pixels is over {MAX_PIXELS:,}"
                    )
                probe.verify()  # checks structure and CRCs without decoding pixels
            image: Image.Image = Image.open(io.BytesIO(data))
            image.load()  # decodes pixels: a truncated file fails here
    except AssetError:
        raise
    except UnidentifiedImageError:
        announced = sniff_format(data)
        if announced:
            raise AssetError(
                f"corrupt {announced}: the file starts as one but cannot be parsed"
            ) from None
        raise AssetError("not an image: the bytes are in no known image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AssetError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AssetError(f"corrupt {fmt or 'image'}: {reason}") from None
    try:
        image = ImageOps.exif_transpose(image) or image
        return image.convert(mode) if image.mode != mode else image
    except (OSError, ValueError) as exc:
        raise AssetError(f"corrupt {fmt or 'image'}: {exc}") from None
