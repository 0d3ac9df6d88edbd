"""The model: networks built from the tutorial's knobs, the Lightning module that trains them,
learning-rate schedules, and the model file on disk."""
