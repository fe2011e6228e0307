"""Image decoding: every format, EXIF, pixel modes, and bad input giving clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hebbian_mirror.datasets import Sample, decode_as_annotated
from hebbian_mirror.datasets.samples import load_sample
from hebbian_mirror.detection import Detection
from hebbian_mirror.errors import ImageTooLargeError, InvalidImageError
from hebbian_mirror.images import decode_image, draw_detections, image_size, label_rects

from ..conftest import DOG, detector
from ..helpers import disjoint, encode


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(DOG).convert("RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_formats_decode_to_rgb(photo, fmt):
    arr = decode_image(encode(photo, fmt))
    assert arr.shape == (photo.height, photo.width, 3) and arr.dtype == np.uint8
    ref = np.asarray(photo, dtype=np.int16)
    tolerance = 40 if fmt in ("JPEG", "WEBP", "GIF") else 0  # lossy formats / GIF's 256-colour palette
    assert np.abs(arr.astype(np.int16) - ref).mean() <= max(tolerance / 4, 0.0)


def test_exif_orientation_applied(photo, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(photo, "JPEG", exif=exif)
    arr = decode_image(data)
    assert arr.shape == (photo.width, photo.height, 3)
    assert decode_image(data, apply_exif=False).shape == (photo.height, photo.width, 3)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    assert image_size(path) == (photo.height, photo.width)


def test_a_sample_decodes_in_its_boxes_pixels(photo, tmp_path):
    """Training, evaluation and pseudo-labelling read a sample's image as its boxes saw it: EXIF applied, unless
    the annotation's size is the stored pixels' (a COCO json or VOC file made on the unrotated image)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encode(photo, "JPEG", exif=exif))
    shown = (photo.width, photo.height, 3)  # as displayed: rotated
    assert decode_as_annotated(Sample(path, photo.height, photo.width)).shape == shown
    stored = decode_as_annotated(Sample(path, photo.width, photo.height))
    assert stored.shape == (photo.height, photo.width, 3)
    assert np.array_equal(stored, decode_image(path, apply_exif=False))
    assert tuple(load_sample(Sample(path, photo.width, photo.height))[0].shape) == (3, photo.height, photo.width)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_pixel_modes_become_rgb(photo, mode):
    img = photo.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    arr = decode_image(encode(img, fmt))
    assert arr.shape == (photo.height, photo.width, 3) and arr.dtype == np.uint8
    if mode in ("L", "LA"):
        assert np.array_equal(arr[..., 0], arr[..., 1])


def test_truncated_jpeg(photo):
    data = encode(photo, "JPEG")
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        decode_image(data[: len(data) // 2])


def test_pixel_limit_is_configurable(photo):
    data = encode(photo, "PNG")
    with pytest.raises(ImageTooLargeError, match="768×576"):
        decode_image(data, max_pixels=100_000)
    assert decode_image(data, max_pixels=None).shape[:2] == (576, 768)


def test_draw_detections_marks_boxes(photo):
    arr = np.asarray(photo)
    dets = [Detection((100.0, 150.0, 300.0, 400.0), 0.9, 16, "dog"), Detection((0, 0, 50, 50), 0.5, 0, "person")]
    out = np.asarray(draw_detections(arr, dets))
    assert out.shape == arr.shape
    assert not np.array_equal(out[150, 100:300], arr[150, 100:300])  # box edge drawn
    assert np.array_equal(out[300, 200], arr[300, 200])  # inside untouched
    assert np.array_equal(np.asarray(photo), arr)  # input not modified


def test_dog_photo_labels_all_visible(photo):
    """The real case: yolov4-tiny on dog.jpg finds a car inside the truck's box; both labels must show."""
    dets = detector("yolov4-tiny").detect([np.array(photo)])[0]
    assert {"car", "truck"} <= {d.label for d in dets}
    assert disjoint(label_rects(photo.size, dets))
