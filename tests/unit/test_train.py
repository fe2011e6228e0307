"""Training augmentation on constructed tensors: quarter turns move the boxes with the pixels."""

from __future__ import annotations

import torch


def test_quarter_turns_move_boxes_with_the_pixels_on_a_landscape_image():
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from hebbian_mirror.datasets.augment import RandomRot90

    image = torch.zeros((3, 40, 60), dtype=torch.uint8)  # H 40, W 60: the turns change the canvas
    image[:, 5:15, 10:30] = 255  # a box x 10..30, y 5..15
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 5.0, 30.0, 15.0]]), format="XYXY", canvas_size=(40, 60))
    turn = RandomRot90(1.0)
    for angle in (90, 180, 270):
        img, box = (turn.transform(x, {"angle": angle}) for x in (tv_tensors.Image(image), boxes))
        ys, xs = torch.nonzero(img[0] == 255, as_tuple=True)
        assert box.tolist() == [[xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]]
        assert tuple(box.canvas_size) == tuple(img.shape[-2:])
        v2.RandomAffine(degrees=0, scale=(0.9, 1.1))(img, box)  # the next transform sees one canvas size
        empty = tv_tensors.BoundingBoxes(torch.zeros((0, 4)), format="XYXY", canvas_size=(40, 60))  # a negative
        img, box = (turn.transform(x, {"angle": angle}) for x in (tv_tensors.Image(image), empty))
        assert tuple(box.canvas_size) == tuple(img.shape[-2:]) and box.shape == (0, 4)
