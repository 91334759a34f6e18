"""Symbolic derivations (sympy) behind fimtheory's numeric code.

``python -m symbolic.generate`` derives the perturbation-series coefficients, the explicit
remainder constants and the second-order FIM expansion, and writes the numpy-only modules
in ``fimtheory/_generated/``. fimtheory itself never imports this package.
"""
