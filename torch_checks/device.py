"""Resolve a ``--device`` option (``cpu``, ``cuda``, ``cuda:N`` or ``auto``) to a torch device."""

from __future__ import annotations

import torch

from fimtheory.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device named by ``spec``.

    Parameters
    ----------
    spec : str, torch.device or None
        ``"auto"`` (or None): CUDA device 0 when available, else CPU. ``"cpu"``.
        ``"cuda"`` or ``"cuda:N"``: that CUDA device, which must exist.

    Returns
    -------
    torch.device

    Raises
    ------
    fimtheory.errors.InputError
        If CUDA is asked for but unavailable (or the index is out of range), or ``spec`` is
        not a recognised device string.
    """
    if spec is None:
        spec = "auto"
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise InputError(f"device must be a string, got {type(spec).__name__}")
    s = spec.strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {spec!r} was asked for but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda}); "
                "use --device cpu or --device auto"
            )
        if s.startswith("cuda:"):
            try:
                idx = int(s.split(":", 1)[1])
            except ValueError:
                raise InputError(f"malformed CUDA device {spec!r}") from None
            if not 0 <= idx < torch.cuda.device_count():
                raise InputError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
            return torch.device("cuda", idx)
        return torch.device("cuda")
    raise InputError(f"unknown device {spec!r}; expected one of cpu, cuda, cuda:N, auto")
