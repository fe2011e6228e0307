"""COCO detection metrics (faster-coco-eval, a drop-in of pycocotools' COCOeval) for any Detector."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from .boxes import iou as box_iou
from .boxes import xywh_to_xyxy
from .classes import canonical_name
from .datasets import DetectionDataset, decode_as_annotated
from .detection import DetectOptions, Detector
from .errors import DatasetError
from .image_batches import decoded_batches
from .meta import DEFAULT_CONF, DEFAULT_IOU, EVAL_CONF, EVAL_MAX_DET

log = logging.getLogger(__name__)
logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)

STAT_KEYS = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)
# COCO's protocol: every detection down to a very low score, at most 100 per image.
EVAL_OPTIONS = DetectOptions(conf=EVAL_CONF, iou=DEFAULT_IOU, max_det=EVAL_MAX_DET)


def coco_ground_truth(ds: DetectionDataset) -> dict:
    """The dataset as a COCO ground-truth dict."""
    images, annotations = [], []
    for s in ds.samples:
        images.append({"id": s.image_id, "width": s.width, "height": s.height, "file_name": s.image.name})
        for b in s.boxes:
            x1, y1, x2, y2 = b.xyxy
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": s.image_id,
                    "category_id": ds.category_ids[b.class_id],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": b.area if b.area is not None else (x2 - x1) * (y2 - y1),
                    "iscrowd": int(b.iscrowd),
                }
            )
    categories = [{"id": cid, "name": n} for cid, n in zip(ds.category_ids, ds.classes, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def class_mapping(model_classes: list[str], ds: DetectionDataset) -> dict[int, int]:
    """Model class id → dataset category id, matched by (normalised) name."""
    by_name = {canonical_name(n): cid for n, cid in zip(ds.classes, ds.category_ids, strict=True)}
    return {i: by_name[canonical_name(n)] for i, n in enumerate(model_classes) if canonical_name(n) in by_name}


def coco_metrics(gt: dict, detections: list[dict], category_ids: list[int] | None = None) -> dict:
    """Run COCOeval on a ground-truth dict and a list of COCO result dicts."""
    coco_gt = COCO(gt)
    if not detections:
        empty = dict.fromkeys(STAT_KEYS, 0.0)
        return empty | {"per_class": {c["name"]: {"AP": 0.0, "AP50": 0.0} for c in gt["categories"]}}
    coco_dt = coco_gt.loadRes(detections)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox")
    if category_ids is not None:
        ev.params.catIds = sorted(category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {k: float(v) for k, v in zip(STAT_KEYS, ev.stats[: len(STAT_KEYS)], strict=True)}
    precision = ev.eval["precision"]  # T×R×K×A×M
    names = {c["id"]: c["name"] for c in gt["categories"]}
    counts: dict[int, int] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        per_class[names[cid]] = {
            "AP": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None,
            "AP50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None,
            "instances": counts.get(cid, 0),
            "pr_curve_iou50": [round(float(v), 4) for v in p50] if (p50 > -1).any() else [],
        }
    return stats | {"per_class": per_class}


def at_threshold(gt: dict, results: list[dict], conf: float, iou: float = 0.5) -> dict:
    """Precision, recall and a confusion matrix at one score threshold (the serving one).

    Detections at or above ``conf`` are matched greedily, best score first, to the unmatched ground truth
    they overlap most (IoU ≥ ``iou``), whatever its class: a match of the same class is a true positive, of
    another class a confusion; an unmatched detection is a false positive, an unmatched ground truth a miss."""
    cats = [c["id"] for c in gt["categories"]]
    names = {c["id"]: c["name"] for c in gt["categories"]}
    index = {cid: i for i, cid in enumerate(cats)}
    n = len(cats)
    matrix = np.zeros((n + 1, n + 1), dtype=int)  # rows: truth (+ background), columns: predicted (+ background)
    truths: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            truths.setdefault(a["image_id"], []).append(a)
    preds: dict[int, list[dict]] = {}
    for r in results:
        if r["score"] >= conf:
            preds.setdefault(r["image_id"], []).append(r)
    for image_id in set(truths) | set(preds):
        t = truths.get(image_id, [])
        p = sorted(preds.get(image_id, []), key=lambda r: -r["score"])
        used = [False] * len(t)
        for r in p:
            best, best_iou = -1, iou
            for j, a in enumerate(t):
                if not used[j]:
                    overlap = box_iou(xywh_to_xyxy(r["bbox"]), xywh_to_xyxy(a["bbox"]))
                    if overlap >= best_iou:
                        best, best_iou = j, overlap
            if best >= 0:
                used[best] = True
                matrix[index[t[best]["category_id"]], index[r["category_id"]]] += 1
            else:
                matrix[n, index[r["category_id"]]] += 1
        for j, a in enumerate(t):
            if not used[j]:
                matrix[index[a["category_id"]], n] += 1
    per_class = {}
    for i, cid in enumerate(cats):
        tp = int(matrix[i, i])
        predicted, actual = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        per_class[names[cid]] = {
            "precision": tp / predicted if predicted else None,
            "recall": tp / actual if actual else None,
        }
    tp = int(np.trace(matrix[:n, :n]))
    predicted, actual = int(matrix[:, :n].sum()), int(matrix[:n, :].sum())
    return {
        "conf": conf,
        "iou": iou,
        "precision": tp / predicted if predicted else None,
        "recall": tp / actual if actual else None,
        "per_class": per_class,
        "confusion_matrix": {"labels": [names[c] for c in cats] + ["background"], "matrix": matrix.tolist()},
    }


def evaluate(
    detector: Detector,
    ds: DetectionDataset,
    options: DetectOptions = EVAL_OPTIONS,
    batch_size: int = 8,
    progress: bool = True,
    serving_conf: float = DEFAULT_CONF,
) -> dict:
    """Detect on every image of ``ds`` and compute COCO metrics, plus precision / recall and a confusion
    matrix at ``serving_conf``; returns the report dict."""
    mapping = class_mapping(detector.class_names, ds)
    if not mapping:
        raise DatasetError(
            f"none of the dataset's classes ({', '.join(ds.classes[:10])}...) is known to model {detector.name}"
        )
    unknown = [n for n, cid in zip(ds.classes, ds.category_ids, strict=True) if cid not in mapping.values()]
    if unknown:
        log.warning(
            "model %s does not know %d dataset classes, left out of the metrics: %s",
            detector.name,
            len(unknown),
            ", ".join(unknown),
        )
    results: list[dict] = []
    skipped: list[str] = []
    start = time.perf_counter()
    desc = f"evaluate {detector.name}" if progress else None
    for batch in decoded_batches(ds.samples, batch_size, decode=decode_as_annotated, progress=desc):
        skipped += [str(error) for _, error in batch.failed]
        for s, dets in zip(batch.items, detector.detect(batch.images, options), strict=True):
            for d in dets:
                if d.class_id in mapping:
                    x1, y1, x2, y2 = d.box
                    results.append(
                        {
                            "image_id": s.image_id,
                            "category_id": mapping[d.class_id],
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": d.score,
                        }
                    )
    elapsed = time.perf_counter() - start
    if skipped and len(skipped) == len(ds.samples):
        raise DatasetError(
            f"none of the {len(skipped)} images could be read (first: {skipped[0]}): wrong image folder?"
        )
    if skipped:
        log.warning("%d images could not be read and were skipped: %s", len(skipped), "; ".join(skipped[:3]))
    gt = coco_ground_truth(ds)
    known = set(mapping.values())
    report = coco_metrics(gt, results, sorted(known))
    gt_known = gt | {
        "categories": [c for c in gt["categories"] if c["id"] in known],
        "annotations": [a for a in gt["annotations"] if a["category_id"] in known],
    }
    report["at_threshold"] = at_threshold(gt_known, results, serving_conf)
    report |= {
        "model": detector.name,
        "dataset": ds.source,
        "images": len(ds.samples) - len(skipped),
        "images_skipped": len(skipped),
        "detections": len(results),
        "conf": options.conf,
        "iou": options.iou,
        "merge": options.merge,
        "augment": options.augment,
        "max_det": options.max_det,
        "classes_not_in_model": unknown,
        "seconds": round(elapsed, 2),
    }
    return report


def write_report(report: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
