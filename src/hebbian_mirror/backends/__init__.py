"""Adapters that wrap other frameworks' detectors behind :class:`~hebbian_mirror.detection.Detector`."""
