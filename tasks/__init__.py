"""Thin DVC stage entry points: `python -m tasks.<stage> ...`."""
