"""Cameras and video: sources read with PyAV under a watchdog, detection through the model's batcher, tracking,
alarm rules, events stored in SQLite with snapshots and clips, and their delivery (signed webhooks, MQTT)
through a persisted outbox."""
