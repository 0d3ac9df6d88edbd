"""The configuration: conf/ composed by Hydra into params.yaml, the checks every value passes
before a stage writes, and the guard that keeps params.yaml what the stages read."""
