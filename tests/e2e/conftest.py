"""The e2e tier: servers, commands, browsers, Ray, DDP, MQTT and RTSP as real processes."""

from ..conftest import require_shared

require_shared()
