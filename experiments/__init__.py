"""Experiments beside the package (each with its own main); not installed with it."""
