"""The textgenrnn LSTM in torch (torch_checks.textgenrnn_lstm) against an independent numpy
implementation of the Keras LSTM equations, and the sanity of its predictions.

Needs the optional extra: ``pip install --no-deps textgenrnn`` and ``pip install h5py``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_checks import textgenrnn_lstm as T  # noqa: E402

pytestmark = pytest.mark.skipif(
    not T.textgenrnn_available(),
    reason="textgenrnn weights or h5py missing (pip install --no-deps textgenrnn; pip install h5py)",
)

TEXT = (
    "The quick brown fox jumps over the lazy dog. It was a dark and stormy night; "
    "the rain fell in torrents, except at occasional intervals."
)


@pytest.fixture(scope="module")
def model():
    return T.load_textgenrnn(dtype=torch.float64)


def _nll(probs, ids):
    return float(-np.log(probs[np.arange(len(ids) - 1), ids[1:]]).mean())


def test_parameter_count_and_vocabulary(model):
    assert sum(p.numel() for p in model.parameters()) == 462_717
    v = T.read_vocab()
    assert len(v) == 464 and min(v.values()) == 1 and max(v.values()) == 464


def test_torch_model_equals_the_numpy_keras_reference(model):
    ids = T.encode(TEXT)
    ref = T.keras_model_numpy(T.windows_of(ids).numpy(), T.cudnn_to_keras(T.read_weights(T.find_files()[0])))
    with torch.no_grad():
        got = torch.softmax(model(ids[None])[0], -1).numpy()
    assert np.abs(got - ref).max() <= 1e-12


def test_keras_lstm_reference_against_hand_computed_step():
    # one step, one unit: z = x·k + b; c = σ(i)·tanh(c̃); h = σ(o)·tanh(c)
    k = np.array([[0.5, -1.0, 2.0, 0.25]])
    r = np.zeros((1, 4))
    b = np.array([0.1, 0.2, -0.3, 0.4])
    h = T.keras_lstm_numpy(np.array([[[1.0]]]), k, r, b)
    z = k[0] + b
    sig = 1 / (1 + np.exp(-z))
    c = sig[0] * np.tanh(z[2])
    assert abs(h[0, 0, 0] - sig[3] * np.tanh(c)) < 1e-15


def test_predictions_are_sane(model):
    ids = T.encode(TEXT)
    with torch.no_grad():
        p = torch.softmax(model(ids[None])[0], -1).numpy()
    assert _nll(p, ids.numpy()) < 2.0  # nats per character on plain English
    for prefix, nxt in [("Hello, how are yo", "u"), ("I love New Yor", "k")]:
        with torch.no_grad():
            lg = model(T.encode(prefix)[None])[0, -1]
        assert T.decode([int(lg.argmax())]) == nxt


def _nll_with(state):
    core = T.Textgenrnn()
    core.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    m = T.TextgenrnnLM(core).double().eval()
    ids = T.encode(TEXT)
    with torch.no_grad():
        p = torch.softmax(m(ids[None])[0], -1).numpy()
    return _nll(p, ids.numpy())


def test_the_cudnn_layout_matters():
    w = T.read_weights(T.find_files()[0])
    good = T.state_from_keras(w)
    assert _nll_with(good) < 2.0
    plain = dict(good)  # kernels read as plain Keras kernels (no cuDNN layout)
    for i in (0, 1):
        plain[f"rnn.{i}.weight_ih_l0"] = np.ascontiguousarray(w[f"rnn_{i + 1}/kernel"].T)
        plain[f"rnn.{i}.weight_hh_l0"] = np.ascontiguousarray(w[f"rnn_{i + 1}/recurrent_kernel"].T)
    assert _nll_with(plain) > 5.0
    swapped = dict(good)  # gates i and f exchanged
    for i in (0, 1):
        for key in (f"rnn.{i}.weight_ih_l0", f"rnn.{i}.weight_hh_l0", f"rnn.{i}.bias_ih_l0", f"rnn.{i}.bias_hh_l0"):
            a = good[key].copy()
            a[:128], a[128:256] = good[key][128:256], good[key][:128]
            swapped[key] = a
    assert _nll_with(swapped) > 3.0
    one_bias = dict(good)  # cuDNN's recurrent bias dropped
    for i in (0, 1):
        one_bias[f"rnn.{i}.bias_hh_l0"] = np.zeros_like(good[f"rnn.{i}.bias_hh_l0"])
    assert _nll_with(one_bias) > _nll_with(good) + 0.2


def test_the_lm_is_causal(model):
    ids = T.encode(TEXT[:30])
    alt = ids.clone()
    alt[20:] = T.encode("x" * 10)
    with torch.no_grad():
        a, b = model(ids[None])[0], model(alt[None])[0]
    torch.testing.assert_close(a[:20], b[:20], rtol=0, atol=0)
    assert not torch.equal(a[20:], b[20:])


def test_windows_are_left_padded():
    w = T.windows_of(torch.arange(1, 6), length=3)
    assert w.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]


def test_bundle_displacement_is_nested_and_in_vocabulary():
    b = T.load_textgenrnn_bundle(n_calibration=3, length=16)
    assert b.calibration.shape == (3, 17)
    lo, hi = b.displace(0.2, 0), b.displace(0.6, 0)
    assert torch.equal(b.displace(0.0, 0), b.calibration)
    changed_lo = lo != b.calibration
    assert bool((hi[changed_lo] == lo[changed_lo]).all())  # nested: what 0.2 changed, 0.6 changed alike
    assert int(hi.min()) >= 1 and int(hi.max()) <= 464
