"""Training, evaluation and publishing for ConVitX checkpoints (never imported by detector/)."""
