"""Labelled detection datasets: one in-memory form, read from and written to YOLO, COCO and Pascal VOC."""

from .io import FORMATS, decode_as_annotated, load_dataset, load_splits, write_splits
from .records import Box, DetectionDataset, Sample, Splits, normalize_split
from .yolo import label_path as yolo_label_path

__all__ = [
    "FORMATS",
    "Box",
    "DetectionDataset",
    "Sample",
    "Splits",
    "decode_as_annotated",
    "load_dataset",
    "load_splits",
    "normalize_split",
    "write_splits",
    "yolo_label_path",
]
