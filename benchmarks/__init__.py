"""Benchmarks of the λ_max(F) engines against peers: ``python -m benchmarks.run``."""
