"""fimtheory: checked spectral theory of the empirical Fisher information matrix.

The numeric core (numpy/scipy/mpmath only; neither torch nor sympy is imported here).
"""

__version__ = "0.1.0"
