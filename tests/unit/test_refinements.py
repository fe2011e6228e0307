"""Box voting (merge) on constructed boxes (test-time augmentation on a real model: tests/models/)."""

from __future__ import annotations

import torch

from hebbian_mirror.darknet.yolo import suppress


def test_merge_averages_each_kept_box_with_its_class_neighbours_by_score():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # kept
            [2.0, 0.0, 12.0, 10.0],  # same class, IoU 0.67 with the first: suppressed, voted in
            [50.0, 50.0, 60.0, 60.0],  # same class, apart: kept on its own
            [1.0, 1.0, 11.0, 11.0],  # another class on top of the first: kept on its own, not voted in
        ]
    )
    scores = torch.tensor([0.9, 0.6, 0.8, 0.7])
    cls = torch.tensor([0, 0, 0, 1])
    plain_boxes, plain_scores, plain_cls = suppress(boxes, scores, cls, iou=0.45, max_det=10)
    merged, merged_scores, merged_cls = suppress(boxes, scores, cls, iou=0.45, max_det=10, merge=True)
    assert plain_scores.tolist() == merged_scores.tolist() and plain_cls.tolist() == merged_cls.tolist() == [0, 0, 1]
    assert plain_boxes.tolist() == [[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 11, 11]]
    # (0.9 × first + 0.6 × second) / 1.5
    assert torch.allclose(merged[0], torch.tensor([0.8, 0.0, 10.8, 10.0]))
    assert merged[1:].tolist() == [[50, 50, 60, 60], [1, 1, 11, 11]]
    # only what NMS removed at this IoU is voted in: at 0.7 the second box is kept, and nothing merges
    assert suppress(boxes, scores, cls, iou=0.7, max_det=10, merge=True)[0][0].tolist() == [0, 0, 10, 10]
    # a box always counts itself: at iou=1 (no IoU is above 1) and for a zero-area box (IoU 0/0) it stays as it is
    assert suppress(boxes[:1], scores[:1], cls[:1], iou=1.0, max_det=10, merge=True)[0].tolist() == [[0, 0, 10, 10]]
    flat = torch.tensor([[5.0, 5.0, 5.0, 9.0]])
    assert suppress(flat, scores[:1], cls[:1], iou=0.45, max_det=10, merge=True)[0].tolist() == flat.tolist()
