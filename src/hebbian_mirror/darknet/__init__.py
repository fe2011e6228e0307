"""Darknet YOLO in PyTorch: cfg parser, layers, weights loader, YOLO decoding, detector."""

from .cfg import Section, parse_cfg, read_cfg
from .detector import DarknetDetector
from .model import DarknetNet
from .weights import load_darknet_weights, load_net

__all__ = ["DarknetDetector", "DarknetNet", "Section", "load_darknet_weights", "load_net", "parse_cfg", "read_cfg"]
