"""Hebbian Mirror: object detection served over HTTP."""

__version__ = "0.1.0"
