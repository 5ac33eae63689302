"""Self-supervised training: schedule, resumable sampling, RNG capture, DDP, the loop."""
