"""Property tests, counterexample search and replay for fimtheory.

The public Hypothesis strategies live in :mod:`properties.strategies` and are re-exported
here (``from properties import psd_matrices``). They are loaded lazily, so importing a
sub-module such as ``properties.commands`` does not require Hypothesis.
"""

from __future__ import annotations

__all__ = [
    "MatrixPerturbation",
    "QuantizationPerturbation",
    "orthogonal_matrices",
    "psd_matrices",
    "psd_with_noise",
    "quantization_noise_matrices",
    "score_matrices",
    "sigma_values",
    "spectra",
    "stochastic_rounding_draws",
    "symmetric_noise",
    "thresholds",
]


def __getattr__(name: str):
    if name in __all__:
        from properties import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'properties' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
