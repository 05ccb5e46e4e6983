"""Benchmarks: training-step times (step_time.py) and the authors' code's (authors_step.py)."""
