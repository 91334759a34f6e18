"""Offline text corpora for the byte-level LM, and calibration / displaced contexts.

Corpora (bytes, no download ever):

* ``"pydoc"`` (the default): a snapshot of the text of the standard library's
  ``pydoc_data.topics`` from CPython 3.11.7 (466,273 bytes of English prose about Python),
  shipped in ``torch_checks/corpora/`` with the Python licence and pinned by its SHA-256, so
  the corpus, the trained byte LM and every figure made from it are the same on every
  machine and under every Python version or set of installed packages.
* ``"fortunes"``: every fortune file of Debian's ``fortunes`` package under
  ``/usr/share/games/fortunes`` (about 2.6 MB of English; ``apt-get install fortunes``).
  Used only when asked for by name (and as the "other corpus" of the ``pydoc`` one, when
  installed): its bytes depend on the installed package version.
* ``"auto"``: kept as a synonym of ``"pydoc"``. (It used to mean "fortunes when installed",
  which made the byte LM depend silently on a Debian package.)

Contexts are int64 tensors of byte values in ``[0, 256)``. Every random draw is made from an
explicit seed through a private :class:`torch.Generator` on the CPU, so results do not
depend on the global RNG state nor on the device.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass

import torch

from fimtheory.errors import InputError

FORTUNES_DIR = "/usr/share/games/fortunes"
CORPORA = ("auto", "fortunes", "pydoc")
#: The shipped pydoc snapshot and the SHA-256 of its decompressed bytes.
PYDOC_SNAPSHOT = os.path.join(os.path.dirname(__file__), "corpora", "pydoc-topics-3.11.7.txt.gz")
PYDOC_SHA256 = "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"


def fortunes_available(directory: str | None = None) -> bool:
    """True when Debian's fortune files are installed in ``directory`` (default
    :data:`FORTUNES_DIR`)."""
    directory = directory or FORTUNES_DIR
    return os.path.isdir(directory) and any(_is_fortune_file(directory, f) for f in os.listdir(directory))


def _is_fortune_file(directory: str, name: str) -> bool:
    path = os.path.join(directory, name)
    return (
        "." not in name  # skip the .dat indices and the .u8 symlinks
        and os.path.isfile(path)
        and not os.path.islink(path)
    )


def _fortunes_bytes(directory: str | None = None) -> bytes:
    directory = directory or FORTUNES_DIR
    names = sorted(f for f in os.listdir(directory) if _is_fortune_file(directory, f))
    parts = []
    for name in names:
        with open(os.path.join(directory, name), "rb") as fh:
            parts.append(fh.read())
    return b"\n".join(parts)


def _pydoc_bytes() -> bytes:
    """The shipped snapshot (see the module docstring), checked against its pinned SHA-256."""
    try:
        with open(PYDOC_SNAPSHOT, "rb") as fh:
            data = gzip.decompress(fh.read())
    except (OSError, EOFError) as exc:
        raise InputError(f"the shipped pydoc corpus {PYDOC_SNAPSHOT} cannot be read: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != PYDOC_SHA256:
        raise InputError(f"the shipped pydoc corpus {PYDOC_SNAPSHOT} does not match its pinned SHA-256")
    return data


def resolve_corpus(name: str = "auto") -> str:
    """Map ``"auto"`` to the corpus actually used; validate the name.

    Raises
    ------
    fimtheory.errors.InputError
        Unknown name, or ``"fortunes"`` asked for but not installed.
    """
    if name not in CORPORA:
        raise InputError(f"unknown corpus {name!r}; expected one of {CORPORA}")
    if name == "auto":
        return "pydoc"
    if name == "fortunes" and not fortunes_available():
        raise InputError(
            f"corpus 'fortunes' needs Debian's fortunes package ({FORTUNES_DIR} is missing); "
            "apt-get install fortunes, or use corpus 'pydoc'"
        )
    return name


def load_corpus(name: str = "auto") -> bytes:
    """Return the raw bytes of corpus ``name`` (see the module docstring)."""
    name = resolve_corpus(name)
    return _fortunes_bytes() if name == "fortunes" else _pydoc_bytes()


def other_corpus(name: str) -> str | None:
    """The corpus that serves as "displaced" text for ``name``, or None if none is available.

    Calibration on fortunes → displaced = pydoc (always available); calibration on pydoc →
    fortunes if installed.
    """
    name = resolve_corpus(name)
    if name == "fortunes":
        return "pydoc"
    return "fortunes" if fortunes_available() else None


def fingerprint(data: bytes) -> str:
    """Short SHA-256 of ``data`` (12 hex digits), used in cache keys."""
    return hashlib.sha256(data).hexdigest()[:12]


@dataclass(frozen=True)
class Split:
    """A train / held-out split of a corpus as 1-D uint8-valued int64 tensors."""

    corpus: str
    train: torch.Tensor
    held_out: torch.Tensor
    fingerprint: str


def split_corpus(name: str = "auto", held_out_fraction: float = 0.1) -> Split:
    """Split corpus ``name`` into a training prefix and a held-out suffix.

    The held-out part is the contiguous last ``held_out_fraction`` of the bytes, so no
    held-out context overlaps a training one (apart from repeated text in the corpus).
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise InputError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    resolved = resolve_corpus(name)
    data = load_corpus(resolved)
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64)
    cut = int(len(t) * (1.0 - held_out_fraction))
    return Split(resolved, t[:cut].clone(), t[cut:].clone(), fingerprint(data))


def sample_windows(stream: torch.Tensor, n: int, length: int, seed: int) -> torch.Tensor:
    """Draw ``n`` windows of ``length`` consecutive bytes from ``stream`` at seeded offsets.

    Returns
    -------
    torch.Tensor
        int64, shape ``(n, length)``, on the CPU.
    """
    if stream.ndim != 1 or len(stream) < length + 1:
        raise InputError(f"stream of length {len(stream)} too short for windows of {length}")
    if n < 1 or length < 1:
        raise InputError(f"need n >= 1 and length >= 1, got n={n}, length={length}")
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, len(stream) - length + 1, (n,), generator=gen)
    idx = starts[:, None] + torch.arange(length)[None, :]
    return stream.cpu()[idx]


def calibration_contexts(
    n: int, length: int, *, corpus: str = "auto", seed: int = 0, held_out_fraction: float = 0.1
) -> torch.Tensor:
    """``n`` calibration contexts of ``length`` bytes from the held-out part of ``corpus``.

    They come from the held-out split so that calibration text was not trained on.
    """
    return sample_windows(split_corpus(corpus, held_out_fraction).held_out, n, length, seed)


def corrupt(contexts: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """Token-by-token corruption: each byte independently replaced, with probability ``rate``,
    by a byte drawn uniformly from ``[0, 256)`` (possibly equal to the original one).

    ``rate = 0`` returns a copy; ``rate = 1`` gives i.i.d. uniform random bytes.
    """
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"corruption rate must be in [0, 1], got {rate}")
    gen = torch.Generator().manual_seed(int(seed))
    c = contexts.cpu()
    mask = torch.rand(c.shape, generator=gen) < rate
    noise = torch.randint(0, 256, c.shape, generator=gen)
    return torch.where(mask, noise, c).to(contexts.device)


def random_contexts(n: int, length: int, seed: int) -> torch.Tensor:
    """``n`` contexts of i.i.d. uniform random bytes (the extreme displacement)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 256, (n, length), generator=gen)


def displaced_contexts(
    n: int,
    length: int,
    *,
    kind: str = "corrupt",
    rate: float = 0.5,
    corpus: str = "auto",
    seed: int = 0,
) -> torch.Tensor:
    """Contexts displaced from the calibration distribution of ``corpus``.

    Parameters
    ----------
    kind : {"corrupt", "random", "other-corpus"}
        ``"corrupt"``: the calibration contexts for the same ``seed`` corrupted at ``rate``
        (:func:`corrupt`), so row i is a displaced version of calibration row i.
        ``"random"``: uniform random bytes. ``"other-corpus"``: windows of the other corpus
        (:func:`other_corpus`); InputError if none is available.
    """
    if kind == "corrupt":
        base = calibration_contexts(n, length, corpus=corpus, seed=seed)
        return corrupt(base, rate, seed + 1_000_003)
    if kind == "random":
        return random_contexts(n, length, seed + 2_000_003)
    if kind == "other-corpus":
        other = other_corpus(corpus)
        if other is None:
            raise InputError("no other corpus is available (install Debian's fortunes)")
        return sample_windows(split_corpus(other).held_out, n, length, seed)
    raise InputError(f"unknown displacement kind {kind!r}; expected corrupt, random, other-corpus")


def decode(context: torch.Tensor) -> str:
    """Bytes of a 1-D context as text (invalid UTF-8 replaced), for display."""
    return bytes(context.detach().cpu().to(torch.uint8).tolist()).decode("utf-8", "replace")
