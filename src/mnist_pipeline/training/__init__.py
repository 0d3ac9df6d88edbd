"""Training machinery behind the train stage: the Trainer and its inputs, resuming, outputs."""
