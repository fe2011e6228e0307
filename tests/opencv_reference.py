"""An independent YOLO pipeline on OpenCV DNN's Darknet importer, to check ours against.

OpenCV zeroes class scores under its [yolo] ``thresh`` (0.2 by default); we load a copy of the cfg with
``thresh=0`` so that it reports every probability, as our implementation does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class OpenCVYolo:
    def __init__(self, cfg: Path, weights: Path, workdir: Path) -> None:
        text = cfg.read_text().replace("[yolo]", "[yolo]\nthresh=0")
        patched = workdir / f"{cfg.stem}-thresh0.cfg"
        patched.write_text(text)
        self.net = cv2.dnn.readNetFromDarknet(str(patched), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.outputs = self.net.getUnconnectedOutLayersNames()

    def raw(self, blob: np.ndarray) -> list[np.ndarray]:
        """Rows ``(cx, cy, w, h)`` relative to the input, objectness, objectness × class probability."""
        self.net.setInput(blob)
        return list(self.net.forward(self.outputs))

    def detect_blob(
        self,
        blob: np.ndarray,
        to_image,  # maps N×4 xyxy in input pixels to image pixels
        image_wh: tuple[int, int],
        conf: float,
        iou: float,
        max_det: int,
    ) -> list[tuple[list[float], float, int]]:
        """Darknet-style selection (every class above ``conf``), class-aware NMS by OpenCV."""
        rows = np.concatenate(self.raw(blob))
        in_h, in_w = blob.shape[2:]
        rows = rows[rows[:, 4] > conf]
        box_idx, cls = np.nonzero(rows[:, 5:] > conf)
        scores = rows[box_idx, 5 + cls]
        cx, cy, w, h = (rows[box_idx, i] for i in range(4))
        xyxy = np.stack([(cx - w / 2) * in_w, (cy - h / 2) * in_h, (cx + w / 2) * in_w, (cy + h / 2) * in_h], 1)
        xyxy = to_image(xyxy)
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, image_wh[0])
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, image_wh[1])
        if not len(scores):
            return []
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), cls.tolist(), conf, iou)
        keep = sorted(np.asarray(keep).reshape(-1).tolist(), key=lambda k: -scores[k])[:max_det]
        return [(xyxy[k].tolist(), float(scores[k]), int(cls[k])) for k in keep]

    def detect_bgr(self, bgr: np.ndarray, size: tuple[int, int], conf: float, iou: float, max_det: int):
        """OpenCV's own preprocessing (plain resize, as AlexeyAB's Darknet) then :meth:`detect_blob`."""
        h, w = bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(bgr, 1 / 255.0, size, swapRB=True, crop=False)
        sx, sy = size[0] / w, size[1] / h

        def to_image(xyxy: np.ndarray) -> np.ndarray:
            out = xyxy.copy()
            out[:, 0::2] /= sx
            out[:, 1::2] /= sy
            return out

        return self.detect_blob(blob, to_image, (w, h), conf, iou, max_det)
