"""Item stage: item vectors learned online from the user stage's gradients (keyed by item)."""
