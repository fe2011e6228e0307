"""The models tier: real weights and data from ../shared, in-process."""

from ..conftest import require_shared

require_shared()
