"""Speed measurements of the training and evaluation paths (`python -m benchmarks.bench`)."""
