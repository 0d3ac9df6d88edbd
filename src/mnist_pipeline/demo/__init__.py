"""`make demo`: a page to draw a digit on, served on 127.0.0.1, showing the model's answer and what
the network sees (its filters, the feature maps before and after pooling) as you draw."""
