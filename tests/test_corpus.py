"""The byte LM's corpus is deterministic: a shipped, hash-pinned snapshot, whatever is installed.

Before, ``corpus="auto"`` (the byte LM's default) read Debian's ``fortunes`` package when it
was installed and the running Python's ``pydoc_data`` otherwise, so the trained model and the
README figures made from it depended silently on the machine.
"""

from __future__ import annotations

import hashlib
import sys
import types

import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from torch_checks import data as D  # noqa: E402


def _fake_fortunes(tmp_path):
    d = tmp_path / "fortunes"
    d.mkdir()
    (d / "wisdom").write_bytes(b"A fortune.\n%\nAnother one.\n%\n" * 100)
    return str(d)


def test_auto_is_the_pinned_snapshot_even_with_fortunes_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "FORTUNES_DIR", _fake_fortunes(tmp_path))
    assert D.fortunes_available()
    assert D.resolve_corpus("auto") == "pydoc"
    data = D.load_corpus("auto")
    assert hashlib.sha256(data).hexdigest() == D.PYDOC_SHA256
    assert D.split_corpus().fingerprint == D.PYDOC_SHA256[:12]
    # fortunes stays available on request, and as the other corpus of pydoc
    assert D.load_corpus("fortunes").startswith(b"A fortune.")
    assert D.other_corpus("pydoc") == "fortunes"


def test_snapshot_does_not_read_the_running_pythons_pydoc_data(monkeypatch):
    fake = types.ModuleType("pydoc_data.topics")
    fake.topics = {"x": "not the snapshot"}
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", fake)
    data = D.load_corpus("pydoc")
    assert len(data) == 466_273
    assert hashlib.sha256(data).hexdigest() == D.PYDOC_SHA256


def test_snapshot_is_tamper_evident(monkeypatch, tmp_path):
    import gzip

    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(b"some other text"))
    monkeypatch.setattr(D, "PYDOC_SNAPSHOT", str(bad))
    with pytest.raises(D.InputError, match="SHA-256"):
        D.load_corpus("pydoc")
    monkeypatch.setattr(D, "PYDOC_SNAPSHOT", str(tmp_path / "missing.txt.gz"))
    with pytest.raises(D.InputError, match="cannot be read"):
        D.load_corpus("pydoc")


def test_snapshot_equals_cpython_3_11_7_pydoc_text():
    """Where the running Python is 3.11.7, the snapshot is exactly its pydoc_data text."""
    if sys.version_info[:3] != (3, 11, 7):
        pytest.skip(f"the snapshot was taken from CPython 3.11.7; this is {sys.version.split()[0]}")
    from pydoc_data.topics import topics

    assert D.load_corpus("pydoc") == "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
