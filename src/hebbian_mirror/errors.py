"""The product's error types, one tree: each carries a message fit to show a user as is.

```
HebbianMirrorError                     anything the product raises on purpose
├── InputError (ValueError)            the caller's own input is wrong: fix it and try again
│   ├── InvalidImageError              not an image we can decode (ImageNotFoundError, ImageTooLargeError,
│   │                                  DecodeTimeoutError)
│   ├── InvalidOptionError             a parameter out of range, an unknown class or device, a feature the
│   │                                  model does not have
│   ├── ConfigError, RuleError         settings, alarm rules
│   ├── DatasetError                   a dataset missing, empty or malformed
│   └── TrainingConfigError            training flags that conflict, or differ from the run being resumed
├── NotFoundError (LookupError)        something named is not there: ModelNotFoundError, WeightsNotFoundError
├── ModelFormatError (ValueError)      a model file that is not what it should be (ChecksumError: its sha256)
├── UnavailableError                   busy or restarting now: try again (QueueFullError, WorkerCrashedError,
│                                      ModelLoadError)
└── StreamError, SourceError, ClipSetError, DeliveryError, TrackingError, ChildError, CommandError: what the
    streams, a camera, a clip set, a delivery target, MLflow, a child process or a command refuse
```

The server maps them to HTTP statuses in one table (``server/errors.py``); the command line prints them as one
line (``cli/common.py``) and shows a traceback for anything else.
"""

from __future__ import annotations

from typing import Any


class HebbianMirrorError(Exception):
    """Base class of every error the product raises on purpose."""


# -- the caller's input ----------------------------------------------------------------------------------------


class InputError(HebbianMirrorError, ValueError):
    """The caller's own input is wrong (an image, a parameter, a file, a combination of flags)."""


class InvalidImageError(InputError):
    """The bytes or file are not an image we can decode (empty, corrupt, truncated, not an image)."""


class ImageNotFoundError(InvalidImageError, FileNotFoundError):
    """An image path that does not exist or is not a file."""


class ImageTooLargeError(InvalidImageError):
    """An image whose pixel count exceeds the configured limit (decompression-bomb guard)."""


class DecodeTimeoutError(InvalidImageError):
    """An image took longer than its decode budget."""


class InvalidOptionError(InputError):
    """A parameter out of range, an unknown class or device, or a feature the model does not have."""


class ConfigError(InputError):
    """A settings value that does not validate; the message names the source and the field."""


class RuleError(InputError):
    """An alarm rule that cannot work (unknown field, bad number, a zone that is not a polygon)."""


class DatasetError(InputError):
    """A dataset that is missing, empty or malformed."""


class TrainingConfigError(InputError):
    """Training flags that conflict with each other, with the model, or with the run being resumed."""


# -- something named that is not there ------------------------------------------------------------------------


class NotFoundError(HebbianMirrorError, LookupError):
    """Something named that is not there."""


class ModelNotFoundError(NotFoundError):
    """A model name that is neither in the zoo nor a usable path."""


class WeightsNotFoundError(NotFoundError, FileNotFoundError):
    """A weights or cfg file that is not cached and cannot be downloaded."""


# -- files that are not what they should be --------------------------------------------------------------------


class ModelFormatError(HebbianMirrorError, ValueError):
    """A cfg, weights, checkpoint or ONNX file we cannot parse, that do not fit together, or that cannot do what
    was asked of it."""


class ChecksumError(ModelFormatError):
    """A downloaded file whose sha256 does not match the published one."""


# -- busy or down for now --------------------------------------------------------------------------------------


class UnavailableError(HebbianMirrorError):
    """Busy, loading or restarting now; where the same request may succeed later, after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(UnavailableError):
    """The model's queue is at ``max_queue`` (or the server is shutting down): try again after ``retry_after``
    seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, retry_after)


class WorkerCrashedError(UnavailableError):
    """The worker process running a batch died (or hung and was killed); it is being restarted."""

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message, retry_after)


class ModelLoadError(UnavailableError):
    """A worker process could not load its model."""


# -- what a camera, a delivery target, MLflow, a child process or a command refuses -----------------------------


class StreamError(HebbianMirrorError):
    """A stream that cannot be added or found (duplicate name, unknown stream)."""


class StreamLimitError(StreamError):
    """A stream over a limit the server sets (how many streams, how many frames per second)."""


class SourceError(HebbianMirrorError):
    """A source that cannot work: no such file, not a video, too large a picture, an unsupported URL."""


class ClipSetError(HebbianMirrorError):
    """A clip set that cannot be read (no clips.json, a clip missing, bad ranges)."""


class DeliveryError(HebbianMirrorError):
    """A message was not accepted (receiver down, refused, timed out) or a target is misconfigured."""


class LinkError(HebbianMirrorError):
    """A link to an event's file that does not open it: ``status`` 403 (not signed by this server) or 410
    (expired)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TrackingError(HebbianMirrorError):
    """MLflow refused something (store unreachable, registry error)."""


class ChildError(HebbianMirrorError):
    """A child process that exited or did not become healthy; the message names it and quotes its log's last
    lines."""

    def __init__(self, child: Any, what: str) -> None:
        self.child = child
        self.what = what
        super().__init__(f"{child.name} {what}; last lines of {child.log_path}:\n{child.tail()}")


class CommandError(HebbianMirrorError):
    """A command's own refusal (bad flag combination, nothing to do)."""
