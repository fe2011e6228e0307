"""torchvision's detection models as a family: detector, family, training adapter."""
