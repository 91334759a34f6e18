"""Benchmarks of the λ_max(F) engines against peers (issue 7): ``python -m benchmarks.run``."""
