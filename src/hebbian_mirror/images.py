"""Image decoding (bytes or paths → RGB uint8 arrays) and drawing detections on images.

The one place that turns user-supplied image data into pixels: the formats photos come in (JPEG, PNG, WebP,
BMP, GIF first frame, TIFF), EXIF orientation applied, every pixel mode converted to 8-bit RGB, and the pixel
and JPEG-scan limits checked from the header before any pixel is decoded. Pillow's other readers (textures,
scientific and legacy formats) are not offered to uploads: each is attack surface and none is a photo.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .errors import ImageNotFoundError, ImageTooLargeError, InvalidImageError
from .meta import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from .detection import Detection

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Pillow's names for them (its JPEG reader also opens cameras' multi-picture JPEGs, MPO).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
FORMATS_ACCEPTED = "accepted: JPEG, PNG, WebP, BMP, GIF, TIFF"

# Our own limit is checked before decoding; Pillow's global bomb guard would only get in the way.
Image.MAX_IMAGE_PIXELS = None

ImageSource = bytes | bytearray | memoryview | str | os.PathLike

# A progressive JPEG costs one pass over every pixel per scan; real encoders write about 10 scans (jpegtran's
# most elaborate scripts a few dozen), so more than this is an attack: one cheap scan repeated 15,000 times in
# a 1.4 MB file keeps a decoder busy for a minute. (libjpeg-turbo's tools offer the same guard as -maxscans.)
MAX_JPEG_SCANS = 100


def _check_jpeg_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG with more than :data:`MAX_JPEG_SCANS` scans before any decoding. A start-of-scan marker
    (FF DA) cannot occur in entropy-coded data (an FF there is always followed by 00), so counting the byte
    pair bounds the number of scans from above; embedded thumbnails add one or two."""
    if data[:2] == b"\xff\xd8" and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise InvalidImageError(
            f"{name} is a JPEG with {scans:,} scans (at most {MAX_JPEG_SCANS} accepted): refusing to decode it"
        )


def image_pixels(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> int:
    """Width × height of encoded image bytes, read from the header alone (no pixel is decoded), after the same
    checks as :func:`decode_image`: what a decode of ``data`` would allocate."""
    with _opened(data, "image data", max_pixels) as img:
        return img.size[0] * img.size[1]


def _check_pixels(width: int, height: int, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}×{height} = {width * height:,} pixels, over the limit of {max_pixels:,}"
        )


@contextmanager
def _opened(data: bytes, name: str, max_pixels: int | None) -> Iterator[Image.Image]:
    """``data`` opened (header read) after the size and scan checks; whatever the block's decoding raises becomes
    :class:`InvalidImageError` (or :class:`ImageTooLargeError`)."""
    if not data:
        raise InvalidImageError(f"{name} is empty (0 bytes)")
    _check_jpeg_scans(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
                _check_pixels(*img.size, max_pixels, name)
                yield img
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name} is not a recognised image format ({FORMATS_ACCEPTED})") from exc
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:  # pragma: no cover - guard disabled above
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"{name} could not be decoded: {exc}") from exc
    except Exception as exc:  # a decoder plug-in's own failure (AVIF, DDS, TIFF, ...) is still a bad image
        raise InvalidImageError(f"{name} could not be decoded ({type(exc).__name__}: {exc})") from exc


def decode_image(
    source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, apply_exif: bool = True
) -> np.ndarray:
    """Decode ``source`` (encoded bytes or a file path) into an ``H×W×3`` RGB ``uint8`` array.

    Raises :class:`ImageNotFoundError` for a missing path, :class:`ImageTooLargeError` when the
    image has more than ``max_pixels`` pixels, and :class:`InvalidImageError` for anything else that
    is not a decodable image, whatever the decoder raised.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {path}")
        data = path.read_bytes()
        name = str(path)
    elif isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = "image data"
    else:
        raise InvalidImageError(f"expected image bytes or a path, got {type(source).__name__}")
    with _opened(data, name, max_pixels) as img:
        img.seek(0)  # first frame of animations
        img.load()
        return to_rgb(ImageOps.exif_transpose(img) if apply_exif else img)


def to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow image mode to an 8-bit RGB array (alpha composited over white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            top = max(float(arr.max(initial=0)), 1e-12) if arr.max(initial=0) > 1 else 1.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Width and height of an image file, read from its header (EXIF orientation applied)."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    except FileNotFoundError as exc:
        raise ImageNotFoundError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidImageError(f"{path} could not be read: {exc}") from exc
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def list_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (non-recursively, sorted) into a list of image paths."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out


def encode_jpeg(image: Image.Image | np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB image as JPEG bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# drawing

_PALETTE = [
    (255, 56, 56),
    (255, 157, 151),
    (255, 112, 31),
    (255, 178, 29),
    (207, 210, 49),
    (72, 249, 10),
    (146, 204, 23),
    (61, 219, 134),
    (26, 147, 52),
    (0, 212, 187),
    (44, 153, 168),
    (0, 194, 255),
    (52, 69, 147),
    (100, 115, 255),
    (0, 24, 236),
    (132, 56, 255),
    (82, 0, 133),
    (203, 56, 255),
    (255, 149, 200),
    (255, 55, 199),
]


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per class id."""
    return _PALETTE[class_id % len(_PALETTE)]


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def _style(size: tuple[int, int]) -> tuple[int, int, ImageFont.ImageFont | ImageFont.FreeTypeFont]:
    """Box line width, label padding and label font for an image of ``size`` (width, height)."""
    line = max(2, round(min(size) / 250))
    return line, max(2, line), _font(max(12, round(min(size) / 40)))


def _label_text(det: Detection) -> str:
    return f"{det.label} {det.score:.2f}"


def _hit(rect: Rect, placed: Iterable[Rect]) -> list[int]:
    """The bottoms of the ``placed`` rectangles that ``rect`` overlaps."""
    return [p[3] for p in placed if rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3]]


def label_rects(size: tuple[int, int], detections: Sequence[Detection]) -> list[Rect]:
    """Where :func:`draw_detections` puts each detection's label on an image of ``size`` (width, height), in the
    order of ``detections``.

    Strongest first, each label takes the first place that overlaps no label placed before it: above its box,
    inside the box's top, below the box, inside the box's bottom; failing those, the first free place further
    down from above the box. Only when no place is free does it go above the box (inside when at the top edge).
    """
    width, height = size
    _, pad, font = _style(size)
    rects: dict[int, Rect] = {}
    for i in sorted(range(len(detections)), key=lambda i: -detections[i].score):
        det = detections[i]
        left, top, right, bottom = font.getbbox(_label_text(det))
        w, h = round(right - left) + 2 * pad, round(bottom - top) + 2 * pad
        x = min(max(round(det.box[0]), 0), max(width - w, 0))
        y1, y2 = round(det.box[1]), round(det.box[3])
        places = [y for y in (y1 - h, y1, y2, y2 - h) if 0 <= y <= height - h]
        y = next((y for y in places if not _hit((x, y, x + w, y + h), rects.values())), None)
        slide = max(y1 - h, 0)
        while y is None and slide <= height - h:  # slide down past whatever label is in the way
            hit = _hit((x, slide, x + w, slide + h), rects.values())
            y, slide = (None, max(hit)) if hit else (slide, slide)
        if y is None:
            y = places[0] if places else min(max(y1 - h, 0), max(height - h, 0))
        rects[i] = (x, y, x + w, y + h)
    return [rects[i] for i in range(len(detections))]


def draw_detections(image: np.ndarray | Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """Return a copy of ``image`` with each detection's box and ``label score`` drawn on it.

    Labels sit on a filled box of the class colour with black or white text, whichever contrasts
    more, so they stay legible on any background; :func:`label_rects` keeps them from covering each other.
    """
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    line, pad, font = _style(img.size)
    for det in detections:
        draw.rectangle(det.box, outline=class_color(det.class_id), width=line)
    # labels after all boxes, weakest first, so that where labels must overlap the strongest stays on top
    placed = sorted(zip(detections, label_rects(img.size, detections), strict=True), key=lambda p: p[0].score)
    for det, rect in placed:
        color = class_color(det.class_id)
        text = _label_text(det)
        left, top, _, _ = font.getbbox(text)
        draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=color)  # the rect's pixels, no more
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text_color = (0, 0, 0) if luminance > 150 else (255, 255, 255)
        draw.text((rect[0] + pad - left, rect[1] + pad - top), text, fill=text_color, font=font)
    return img
