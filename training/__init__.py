"""Fine-tuning code per bot: the training container's entry points."""
