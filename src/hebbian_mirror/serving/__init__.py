"""The engine: the served models hosted, batched and run (worker processes, threads or Ray replicas), no HTTP."""
