"""A run: its config made concrete, the jitted steps, the training loop, evaluation
modes and the comparison of runs."""
