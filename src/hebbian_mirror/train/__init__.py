"""Fine-tuning detectors on your own data: heads, loss, data pipeline, training loop, checkpoints."""
