"""Measurements: training and evaluation speed (`python -m benchmarks.bench`) and apex spotting under head
drift and sensor noise (`python -m benchmarks.spotting`)."""
