"""What evaluate publishes: test metrics from logits, and the figures a person looks at."""
