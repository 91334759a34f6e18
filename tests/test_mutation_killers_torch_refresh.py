"""Mutation killers for torch_checks functions re-run after their fixes (monitor, quantizers).

Each test compares with an independent reference (dense float64 eigvalsh, the numpy quantizer).
"""
