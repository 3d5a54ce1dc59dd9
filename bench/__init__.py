"""Benchmarks of runway-relay against the bare stack; run with ``make bench`` (see run.py)."""
