"""Image decoding and drawing on constructed images: formats, pixel modes, bad input, label placement."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hebbian_mirror.detection import Detection
from hebbian_mirror.errors import ImageNotFoundError, ImageTooLargeError, InvalidImageError
from hebbian_mirror.images import class_color, decode_image, draw_detections, label_rects

from ..helpers import disjoint, encode, huge_png


def test_gif_first_frame():
    frames = [Image.new("RGB", (32, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    arr = decode_image(buf.getvalue())
    assert arr.shape == (16, 32, 3) and arr[0, 0, 0] > 200 and arr[0, 0, 2] < 50


def test_sixteen_bit_grayscale_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 256, dtype=np.uint16)[None, :]).repeat(8, axis=0)
    data = encode(Image.fromarray(ramp), "PNG")  # uint16 → mode I;16
    arr = decode_image(data)
    assert arr.shape == (8, 256, 3)
    assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255 and 120 <= arr[0, 128, 0] <= 135


def test_rgba_transparent_becomes_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_image(encode(img, "PNG"))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"", InvalidImageError, "empty"),
        (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), InvalidImageError, "not a recognised"),
        (b"hello, this is a text file\n" * 20, InvalidImageError, "not a recognised"),
        (huge_png(100_000, 100_000), ImageTooLargeError, "over the limit"),
    ],
    ids=["empty", "random-bytes", "text", "huge-dimensions"],
)
def test_bad_bytes_raise_clear_errors(payload, error, words):
    with pytest.raises(error, match=words):
        decode_image(payload)


def test_missing_path_and_wrong_type(tmp_path):
    with pytest.raises(ImageNotFoundError, match="not found"):
        decode_image(tmp_path / "nope.jpg")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InvalidImageError, match=r"notes\.txt"):
        decode_image(text)
    with pytest.raises(InvalidImageError, match="expected image bytes or a path"):
        decode_image(12345)  # type: ignore[arg-type]


def test_labels_of_overlapping_boxes_do_not_cover_each_other():
    """Three boxes with nearly the same top-left corner: each label gets its own place, and each is visible in
    the drawing (its own colour at its corner, not a neighbour's)."""
    gray = np.full((400, 500, 3), 128, np.uint8)
    dets = [
        Detection((100.0, 100.0, 300.0, 300.0), 0.9, 16, "dog"),
        Detection((104.0, 102.0, 290.0, 280.0), 0.8, 7, "truck"),
        Detection((98.0, 99.0, 310.0, 320.0), 0.7, 2, "car"),
    ]
    rects = label_rects((500, 400), dets)
    assert disjoint(rects), rects
    assert all(0 <= r[0] < r[2] <= 500 and 0 <= r[1] < r[3] <= 400 for r in rects)
    assert rects[0][3] == 100  # the strongest keeps the usual place, just above its box
    out = np.asarray(draw_detections(gray, dets))
    for det, (x1, y1, x2, y2) in zip(dets, rects, strict=True):
        assert tuple(out[y1 + 1, x1 + 1]) == class_color(det.class_id), det.label
        assert tuple(out[y2 - 1, x2 - 2]) == class_color(det.class_id), det.label


def test_labels_at_the_top_edge_go_inside_and_a_crowd_slides_down():
    dets = [Detection((10.0, 0.0, 200.0, 60.0), 0.9 - i / 100, i, f"class{i}") for i in range(6)]
    rects = label_rects((300, 300), dets)
    assert rects[0][1] == 0  # no room above: inside the box's top
    assert disjoint(rects) and all(r[3] <= 300 for r in rects), rects
    assert label_rects((300, 300), dets) == rects  # deterministic
