"""The run subprocess: data, samplers, losses, encoder, training loop, evaluation, checkpoints."""
