"""Turn whatever a user hands us into one RGB PIL image, or a readable error.

One decode policy for inference *and* training, so the two cannot drift:
EXIF orientation applied; first frame of animations; 16-bit scaled (not
clipped to white); palette/grey/CMYK converted; alpha composited on white.
"""
from __future__ import annotations

import io
import os
import warnings
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Optional HEIC/AVIF support. pillow-heif's binary wheels bundle GPL-licensed
# libheif/x265, so it is not a dependency: install it yourself to enable HEIC.
try:  # pragma: no cover - depends on an optional package
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC_SUPPORTED = True
except ImportError:
    HEIC_SUPPORTED = False

DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: above any phone camera, far below a decompression bomb
ALPHA_BACKGROUND = (255, 255, 255)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray, io.IOBase]


class ImageError(ValueError):
    """Base class: the message is safe to show to an end user."""


class EmptyImageError(ImageError):
    pass


class NotAnImageError(ImageError):
    pass


class TruncatedImageError(ImageError):
    pass


class ImageTooLargeError(ImageError):
    pass


class UnsupportedImageError(ImageError):
    pass


# What Pillow raises on damaged data (headers, chunks, compressed streams). Its own
# text ("Truncated File Read", "could not create decoder object") means nothing to
# users, so every one of these becomes a TruncatedImageError that names the file.
DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
    IndexError, KeyError, TypeError, ZeroDivisionError, OverflowError, MemoryError,
)
REDO = ": export or download it again, or try another copy of the image"


class CannotJudgeError(ImageError):
    """The image decodes, but is too small or too flat for the pixel model to judge."""


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (path, bytes, file object, PIL image or array) to RGB."""
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels)
        try:
            source.load()  # a lazily opened file may still be truncated
        except DECODE_ERRORS:
            raise TruncatedImageError(f"the image is truncated or corrupted and cannot be decoded{REDO}") from None
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return to_rgb(array_to_image(source, max_pixels))
    return to_rgb(_open(*_read(source), max_pixels))


@dataclass
class DecodedImage:
    """One decoded file with what evidence beyond the pixels needs: its bytes, real format and metadata.

    ``image`` is the RGB image of the one decode policy (what the pixel model sees);
    ``data`` the file's bytes (None for in-memory images and arrays); ``format`` is
    sniffed from the bytes, never from the extension; ``info`` and ``exif`` are
    what Pillow parsed (text chunks, XMP, ICC...; EXIF tags by number).
    """

    image: Image.Image
    name: str
    data: bytes | None = field(default=None, repr=False)
    format: str | None = None
    info: dict = field(default_factory=dict, repr=False)
    exif: dict = field(default_factory=dict, repr=False)
    original_mode: str = "RGB"

    @property
    def mime(self) -> str | None:
        return MIME_TYPES.get(self.format or "")


def decode(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> DecodedImage:
    """Like :func:`load_image`, but keep the bytes, the sniffed format and Pillow's metadata."""
    if isinstance(source, (Image.Image, np.ndarray)):
        image = load_image(source, max_pixels)
        info = dict(source.info) if isinstance(source, Image.Image) else {}
        return DecodedImage(image=image, name=name or "the image", info=info)
    data, source_name = _read(source)
    opened = _open(data, source_name, max_pixels)
    info, exif = dict(opened.info), _exif_tags(opened)
    mode = opened.mode
    return DecodedImage(
        image=to_rgb(opened), name=name or source_name, data=data, format=sniff_format(data),
        info=info, exif=exif, original_mode=mode,
    )


# Magic numbers: the format comes from the bytes, so a PNG named .jpg is still a PNG.
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
MIME_TYPES = {
    "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp", "tiff": "image/tiff",
    "webp": "image/webp", "heic": "image/heic", "avif": "image/avif",
}


def sniff_format(data: bytes) -> str | None:
    """The container format from the first bytes: jpeg, png, gif, bmp, tiff, webp, heic, avif, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"):
            return "heic"
    return None


def _exif_tags(image: Image.Image) -> dict:
    """EXIF base and Exif-IFD tags by number; a broken EXIF block gives an empty dict, not an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": we answer with an empty dict instead
            exif = image.getexif()
            tags = dict(exif)
            tags.update(exif.get_ifd(0x8769))  # Exif IFD: exposure, lens, UserComment
        return tags
    except Exception:  # noqa: BLE001 - EXIF is optional evidence; a broken block must not reject the image
        return {}


def _read(source: ImageSource) -> tuple[bytes, str]:
    """The bytes behind a path, bytes-like or file object, and a name to show users."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "the uploaded data"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise NotAnImageError(f"{name}: no such file")
        data = path.read_bytes()
    elif hasattr(source, "read"):
        data = source.read()
        name = Path(str(getattr(source, "name", "the uploaded file"))).name
    else:
        raise UnsupportedImageError(f"cannot read an image from a {type(source).__name__}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnsupportedImageError(f"{name} was opened in text mode: open image files in binary mode")
    if not data:
        raise EmptyImageError(f"{name} is empty (0 bytes)")
    return bytes(data), name


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns between 1x and 2x its own bomb limit; we apply ours below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data" and the like: we decode or raise our own error
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            # Pillow refuses before we can read the size: above ~179 MP, far over our limit.
            raise ImageTooLargeError(
                f"{name} is too large: over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP; the limit is {max_pixels / 1e6:.0f} MP"
            ) from None
        except UnidentifiedImageError:
            heic = "" if HEIC_SUPPORTED else " (HEIC needs the optional pillow-heif package)"
            raise NotAnImageError(
                f"{name} is not an image format we can read: use JPEG, PNG, WebP, GIF, BMP or TIFF{heic}"
            ) from None
        except DECODE_ERRORS:
            # The format was recognised but its header is damaged (Pillow's own text is not for users).
            raise TruncatedImageError(f"{name} is truncated or corrupted and cannot be decoded{REDO}") from None
        _check_size(image.size, max_pixels, name)
        try:
            image.seek(0)  # animated GIF/WebP/APNG: the first frame
            image.load()
        except DECODE_ERRORS:
            raise TruncatedImageError(f"{name} is truncated or corrupted and cannot be decoded{REDO}") from None
    return image


def _check_size(size: tuple[int, int], max_pixels: int, name: str = "the image") -> None:
    width, height = size
    if width < 1 or height < 1:
        raise EmptyImageError(f"{name} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.0f} MP"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the one colour policy: EXIF orientation, depth, mode, alpha."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not reject a decodable image
        pass
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale 0..65535 to 0..255. Pillow's convert() would clip to white.
        array = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.size and np.nanmax(array) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.nan_to_num(array) * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, ALPHA_BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def array_to_image(array: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays: uint8, uint16 (scaled), bool, or float in [0, 1]."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UnsupportedImageError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}")
    _check_size((array.shape[1], array.shape[0]), max_pixels)
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        array = (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise UnsupportedImageError(f"unsupported array dtype {array.dtype}")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[array.shape[2] if array.ndim == 3 else 2]
    return Image.fromarray(np.ascontiguousarray(array), mode=mode)
