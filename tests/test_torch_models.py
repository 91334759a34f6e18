"""Models, data and device resolution of torch_checks (fast: tiny configs, temporary cache)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("sklearn", reason="the digits models need scikit-learn")

from fimtheory.errors import InputError, UnknownIdError  # noqa: E402
from torch_checks import data as D  # noqa: E402
from torch_checks import models as M  # noqa: E402
from torch_checks.device import resolve_device  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private model cache for this module (FIMTHEORY_CACHE)."""
    d = tmp_path_factory.mktemp("fimcache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIMTHEORY_CACHE", str(d))
    yield d
    mp.undo()


TINY = M.ByteLMConfig.tiny()


# ---------------------------------------------------------------- device


def test_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_device_cuda_unavailable_is_input_error(spec):
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "tpu", "", 3])
def test_device_bad_spec(spec):
    with pytest.raises(InputError):
        resolve_device(spec)


# ---------------------------------------------------------------- data


def test_pydoc_corpus_always_available_and_split():
    data = D.load_corpus("pydoc")
    assert len(data) > 300_000
    s = D.split_corpus("pydoc", held_out_fraction=0.1)
    assert s.corpus == "pydoc"
    assert len(s.train) + len(s.held_out) == len(data)
    assert abs(len(s.held_out) / len(data) - 0.1) < 1e-3
    assert int(s.train.max()) < 256 and int(s.train.min()) >= 0


def test_auto_falls_back_to_pydoc_without_fortunes(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "FORTUNES_DIR", str(tmp_path / "none"))
    assert not D.fortunes_available()
    assert D.resolve_corpus("auto") == "pydoc"
    with pytest.raises(InputError, match="fortunes"):
        D.resolve_corpus("fortunes")
    assert D.other_corpus("pydoc") is None
    with pytest.raises(InputError):
        D.displaced_contexts(2, 16, kind="other-corpus", corpus="pydoc")


def test_contexts_seeded_and_corruption():
    a = D.calibration_contexts(8, 40, corpus="pydoc", seed=3)
    b = D.calibration_contexts(8, 40, corpus="pydoc", seed=3)
    c = D.calibration_contexts(8, 40, corpus="pydoc", seed=4)
    assert a.shape == (8, 40) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(D.corrupt(a, 0.0, seed=1), a)
    r = D.corrupt(a, 0.5, seed=1)
    frac = float((r != a).double().mean())
    assert 0.3 < frac < 0.6  # rate 0.5, minus the 1/256 chance of redrawing the same byte
    assert torch.equal(r, D.corrupt(a, 0.5, seed=1))
    d = D.displaced_contexts(8, 40, kind="corrupt", rate=0.25, corpus="pydoc", seed=3)
    assert d.shape == a.shape and 0 < int((d != a).sum()) < a.numel()
    rnd = D.displaced_contexts(8, 40, kind="random", seed=3)
    assert rnd.shape == (8, 40)
    with pytest.raises(InputError):
        D.corrupt(a, 1.5, seed=0)
    with pytest.raises(InputError):
        D.displaced_contexts(2, 8, kind="nope")
    assert isinstance(D.decode(a[0]), str)


# ---------------------------------------------------------------- byte LM


def test_byte_lm_forward_shapes_and_causality():
    torch.manual_seed(0)
    m = M.ByteLM(TINY).eval()
    x = torch.randint(0, 256, (2, 20))
    out = m(x)
    assert out.shape == (2, 20, 256)
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 256
    # positions < 10 see only unchanged bytes
    assert torch.allclose(m(y)[:, :10], out[:, :10], atol=1e-6)
    with pytest.raises(InputError):
        m(torch.zeros(1, TINY.context + 1, dtype=torch.long))


def test_byte_lm_training_deterministic_from_seed(cache):
    cfg = M.ByteLMConfig.tiny(steps=25, eval_bytes=1024, corpus="pydoc")
    m1, _ = M.train_byte_lm(cfg)
    m2, _ = M.train_byte_lm(cfg)
    m3, _ = M.train_byte_lm(M.ByteLMConfig.tiny(steps=25, eval_bytes=1024, corpus="pydoc", seed=1))
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_tiny_byte_lm_beats_uniform_and_is_cached(cache):
    m, info = M.load_byte_lm(TINY)
    bpb = info["held_out_bits_per_byte"]
    assert bpb < 6.0, f"held-out {bpb:.3f} bits/byte is not clearly below the uniform 8"
    path = info["cache_path"]
    assert path.startswith(str(cache))
    import os

    assert os.path.exists(path)
    m2, info2 = M.load_byte_lm(TINY)  # from the cache
    assert info2 == info
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


def test_config_hash_changes_with_config():
    a = M.config_hash({"a": 1, "b": 2})
    assert a == M.config_hash({"b": 2, "a": 1})
    assert a != M.config_hash({"a": 1, "b": 3})


# ---------------------------------------------------------------- digits


FAST_DIGITS = M.DigitsConfig(steps=150)


def test_digits_data_split():
    Xtr, ytr, Xte, yte = M.digits_data((3, 8), bias_feature=True)
    assert Xtr.shape[1] == 65 and torch.all(Xtr[:, -1] == 1)
    assert set(ytr.tolist()) == {0, 1}
    assert float(Xtr[:, :64].max()) <= 1.0
    Xtr2, *_ = M.digits_data((3, 8), bias_feature=True)
    assert torch.equal(Xtr, Xtr2)


def test_logistic_trains_deterministically(cache):
    m1, info, _ = M.load_logistic(FAST_DIGITS, retrain=True)
    m2, _, _ = M.load_logistic(FAST_DIGITS, retrain=True)
    assert torch.equal(m1.weight, m2.weight)
    assert m1.weight.shape == (1, 65) and m1.weight.dtype == torch.float64
    assert info["test_accuracy"] > 0.9


def test_mlp_digits_trains_deterministically(cache):
    m1, info, _ = M.load_mlp_digits(FAST_DIGITS, retrain=True)
    m2, _, _ = M.load_mlp_digits(FAST_DIGITS, retrain=True)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert info["test_accuracy"] > 0.85


def test_off_manifold_directions_unit_and_orthogonal():
    Xtr, _, Xte, _ = M.digits_data(None)
    U = M.off_manifold_directions(Xtr, Xte[:10], k=20, seed=0)
    assert torch.allclose(U.norm(dim=1), torch.ones(10, dtype=U.dtype))
    _, _, Vh = torch.linalg.svd(Xtr - Xtr.mean(0), full_matrices=False)
    assert float((U @ Vh[:20].T).abs().max()) < 1e-10


# ---------------------------------------------------------------- registry


def test_registry_names_and_unknown():
    assert set(M.MODELS) >= {"logistic", "mlp-digits", "byte-lm", "smollm2"}
    with pytest.raises(UnknownIdError):
        M.load_model("nope")


def test_classifier_bundle(cache):
    b = M.load_model("logistic", config=FAST_DIGITS)
    assert b.kind == "classifier" and b.param_names == ("weight",)
    X, y = b.calibration
    Xt, yt = b.displace(0.0, 0)
    assert torch.allclose(Xt, X) and torch.equal(yt, y)
    X2, _ = b.displace(2.0, 0)
    assert torch.allclose((X2 - X)[:, :64].norm(dim=1), torch.full((len(X),), 2.0, dtype=X.dtype))
    assert torch.all(X2[:, -1] == 1)  # bias feature kept
    S = b.scores((X[:5], y[:5]))
    assert S.G.shape == (5, 65)
    with pytest.raises(UnknownIdError):
        b.select_params(["nope"])
    m = M.load_model("mlp-digits", config=FAST_DIGITS)
    assert m.select_params("all") == ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def test_byte_lm_bundle(cache):
    b = M.load_model("byte-lm", config=TINY, n_calibration=4)
    assert b.kind == "lm"
    assert b.calibration.shape == (4, TINY.context + 1)
    assert b.param_names == ("blocks.0.mlp.proj.weight",)
    d = b.displace(1.0, 0)
    assert d.shape == b.calibration.shape
    x, y = b.score_pairs(b.calibration[0])
    assert torch.equal(x[1:], y[:-1])
    S = b.scores(b.calibration[0])
    assert S.G.shape == (TINY.context, TINY.d_ff * TINY.d_model)
