"""Fine-tuning detectors on your own data: the Trainer (plan, processes, callbacks), the training loop and engine
(epochs, validation, checkpoints, resume), sampling, recipes, MLflow runs; what differs per family is each family's
training adapter (``darknet/training.py``, ``torchvision/training.py``)."""
