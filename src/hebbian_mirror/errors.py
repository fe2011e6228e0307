"""The product's error types: each carries a message fit to show a user as is."""

from __future__ import annotations


class HebbianMirrorError(Exception):
    """Base class of every error the product raises on purpose."""


class InvalidImageError(HebbianMirrorError, ValueError):
    """The bytes or file are not an image we can decode (empty, corrupt, truncated, not an image)."""


class ImageNotFoundError(InvalidImageError, FileNotFoundError):
    """An image path that does not exist or is not a file."""


class ImageTooLargeError(InvalidImageError):
    """An image whose pixel count exceeds the configured limit (decompression-bomb guard)."""


class ModelNotFoundError(HebbianMirrorError, LookupError):
    """A model name that is neither in the zoo nor a usable path."""


class WeightsNotFoundError(HebbianMirrorError, FileNotFoundError):
    """A weights or cfg file that is not cached and cannot be downloaded."""


class ChecksumError(HebbianMirrorError):
    """A downloaded file whose sha256 does not match the published one."""


class ModelFormatError(HebbianMirrorError, ValueError):
    """A cfg or weights file we cannot parse or that do not fit together."""


class DatasetError(HebbianMirrorError, ValueError):
    """A dataset that is missing, empty or malformed."""
