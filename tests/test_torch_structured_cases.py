"""The structured Gram path on models whose structure the forward reveals: call order differing
from registration order, a module called twice, per-position use, convolutions, tied weights,
Hugging Face Conv1D / GPT-2 — each against the dense float64 reference λ_max(GGᵀ/n) from autograd
per-sample gradients (torch.func vmap/grad); and the cases it must refuse instead of a number."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[torch]')")

from torch import nn  # noqa: E402

from fimtheory.errors import HypothesesNotMet, InputError  # noqa: E402
from torch_checks.engines import (  # noqa: E402
    gram_matrix,
    lambda_max,
    lambda_max_structured,
    structured_gram,
    structured_gram_details,
)
from torch_checks.scores import per_sample_scores, per_token_scores  # noqa: E402

pytestmark = pytest.mark.torch

EPS = torch.finfo(torch.float64).eps


# ---------------------------------------------------------------------- models as data


class ReorderedMLP(nn.Module):
    """fc2 is registered before fc1, but fc1 runs first."""

    def __init__(self):
        super().__init__()
        self.fc2 = nn.Linear(5, 3)
        self.fc1 = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class TwiceCalled(nn.Module):
    """One Linear applied twice in a row."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.fc(torch.tanh(self.fc(x)))))


class PerPosition(nn.Module):
    """A Linear applied to every position of a (batch, T, d) input, then pooled: per-sample
    scores are sums of T rank-one terms."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.proj(x)).mean(dim=1))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 3, 3, stride=2, dilation=1)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x):
        h = torch.relu(self.c2(torch.tanh(self.c1(x))))
        return self.fc(h.flatten(1))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(3, 4, 3, padding="same", dilation=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.c(x)).mean(-1))


class TiedBag(nn.Module):
    """Embedding-bag classifier whose output layer is the (tied) embedding matrix, with a
    padding index."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4, padding_idx=0)
        self.mid = nn.Linear(4, 4)
        self.out = nn.Linear(4, 7, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, idx):
        return self.out(torch.tanh(self.mid(self.emb(idx).sum(1))))


def _hf_conv1d_net():
    Conv1D = pytest.importorskip(
        "transformers.pytorch_utils", reason="Hugging Face Conv1D needs transformers (the [lm] extra)"
    ).Conv1D

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Conv1D(6, 4)  # nf=6 outputs, nx=4 inputs: weight (4, 6)
            self.b = Conv1D(3, 6)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    return Net()


def _case(name):
    torch.manual_seed(0)
    n = 9
    if name == "reordered-mlp":
        return ReorderedMLP(), torch.randn(n, 6), 3, ["fc1.weight", "fc2.bias"]
    if name == "reordered-mlp-all":
        return ReorderedMLP(), torch.randn(n, 6), 3, ["fc2.weight", "fc1.weight", "fc1.bias", "fc2.bias"]
    if name == "twice-called":
        return TwiceCalled(), torch.randn(n, 5), 3, ["fc.weight", "fc.bias"]
    if name == "per-position":
        return PerPosition(), torch.randn(n, 5, 4), 3, ["proj.weight", "proj.bias"]
    if name == "cnn":
        return SmallCNN(), torch.randn(n, 2, 7, 7), 4, ["c1.weight", "c1.bias", "c2.weight", "fc.weight"]
    if name == "conv1d":
        return Conv1dNet(), torch.randn(n, 3, 8), 3, ["c.weight", "c.bias"]
    if name == "tied-embedding":
        x = torch.randint(0, 7, (n, 5))
        x[0, :2] = 0  # padding rows receive no gradient
        return TiedBag(), x, 7, ["out.weight", "mid.bias"]
    if name == "hf-conv1d":
        return _hf_conv1d_net(), torch.randn(n, 4), 3, ["a.weight", "a.bias", "b.weight"]
    raise KeyError(name)


CASES = [
    "reordered-mlp",
    "reordered-mlp-all",
    "twice-called",
    "per-position",
    "cnn",
    "conv1d",
    "tied-embedding",
    "hf-conv1d",
]


def _reference_names(model, names):
    """The deduplicated names per_sample_scores knows (a tied alias → its first name)."""
    canon = {id(p): k for k, p in model.named_parameters()}
    alias = dict(model.named_parameters(remove_duplicate=False))
    return [canon[id(alias[k])] for k in names]


@pytest.mark.parametrize("name", CASES)
def test_structured_equals_dense_autograd_reference(name):
    model, X, K_classes, names = _case(name)
    model = model.double().eval()
    X = X.double() if X.is_floating_point() else X
    y = torch.randint(0, K_classes, (X.shape[0],), generator=torch.Generator().manual_seed(1))
    G = per_sample_scores(model, _reference_names(model, names), X, y, dtype=torch.float64).G
    K_ref = gram_matrix(G)
    lam_ref = lambda_max(G, method="gram").value

    def logp():
        return torch.log_softmax(model(X), -1).gather(-1, y[:, None]).reshape(-1)

    sg = structured_gram_details(model, logp, names)
    tol = 64 * G.shape[0] * EPS * float(K_ref.abs().max())
    assert float((sg.K - K_ref).abs().max()) <= tol, name
    r = lambda_max_structured(model, logp, names)
    assert r.value == pytest.approx(lam_ref, rel=1e-10), (name, r.value, lam_ref)
    assert r.P == G.shape[1]
    assert "H2 verified" in sg.checks and "H1 on the autograd graph" in sg.checks


def test_reordered_mlp_structure_follows_the_forward():
    model, X, _, names = _case("reordered-mlp")
    model = model.double()
    y = torch.zeros(X.shape[0], dtype=torch.long)
    X = X.double()
    sg = structured_gram_details(model, lambda: torch.log_softmax(model(X), -1)[:, 0], names)
    # fc1 is call 0 and fc2 call 1, whatever the registration order
    assert sg.structure[0].startswith("fc1.weight: 1 call(s) fc1#0(linear)")
    assert sg.structure[1].startswith("fc2.bias: 1 call(s) fc2#1(linear)")
    del y


def test_twice_called_and_per_position_are_reported():
    m, X, _, names = _case("twice-called")
    m = m.double()
    X = X.double()
    sg = structured_gram_details(m, lambda: torch.log_softmax(m(X), -1)[:, 0], names)
    assert "2 call(s)" in sg.structure[0]
    m, X, _, names = _case("per-position")
    m = m.double()
    X = X.double()
    sg = structured_gram_details(m, lambda: torch.log_softmax(m(X), -1)[:, 0], names)
    assert "5 rows/sample" in sg.structure[0]


def test_functional_call_with_detached_parameters():
    """The benchmark's form: per_sample_logp runs functional_call with detached copies."""
    from torch.func import functional_call

    model, X, _, names = _case("twice-called")
    model = model.double()
    X = X.double()
    y = torch.randint(0, 3, (X.shape[0],), generator=torch.Generator().manual_seed(2))
    p = {k: v.detach() for k, v in model.named_parameters()}

    def logp():
        return torch.log_softmax(functional_call(model, p, (X,)), -1).gather(-1, y[:, None]).reshape(-1)

    G = per_sample_scores(model, names, X, y).G
    sg = structured_gram_details(model, logp, names)
    assert float((sg.K - gram_matrix(G)).abs().max()) <= 64 * 9 * EPS * float(sg.K.abs().max())
    assert "functional_call with detached tensors" in sg.checks
    assert all(not v.requires_grad for v in p.values())  # the caller's tensors are untouched
    assert all(p[k] is not None for k in p)


# ---------------------------------------------------------------------- GPT-2 from a config


@pytest.fixture(scope="module")
def tiny_gpt2():
    transformers = pytest.importorskip("transformers", reason="GPT-2 needs transformers (the [lm] extra)")
    cfg = transformers.GPT2Config(
        vocab_size=31,
        n_positions=16,
        n_embd=8,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).double().eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    return model


class _LastToken(nn.Module):
    """Per-sample classifier view of an LM: logits of the last position of each sequence."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, x):
        return self.lm(x).logits[:, -1, :]


def test_gpt2_tied_lm_head_per_sample_is_exact(tiny_gpt2):
    wrap = _LastToken(tiny_gpt2)
    gen = torch.Generator().manual_seed(3)
    X = torch.randint(0, 31, (6, 7), generator=gen)
    y = torch.randint(0, 31, (6,), generator=gen)
    G = per_sample_scores(wrap, ["lm.transformer.wte.weight"], X, y).G

    def logp():
        return torch.log_softmax(wrap(X), -1).gather(-1, y[:, None]).reshape(-1)

    r = lambda_max_structured(wrap, logp, ["lm.lm_head.weight"])
    assert r.P == 31 * 8 == G.shape[1]
    assert r.value == pytest.approx(lambda_max(G, method="gram").value, rel=1e-10)
    assert any("2 call(s)" in s for s in r.structure)


def test_gpt2_per_token_tied_weight_is_refused(tiny_gpt2):
    """Per token, the tied embedding's rows feed every later position through attention."""
    x = torch.randint(0, 31, (12,), generator=torch.Generator().manual_seed(4))
    inp, tgt = x[:-1], x[1:]

    def logp():
        return torch.log_softmax(tiny_gpt2(inp[None]).logits[0], -1).gather(-1, tgt[:, None]).reshape(-1)

    with pytest.raises(HypothesesNotMet, match="lm_head.weight"):
        lambda_max_structured(tiny_gpt2, logp, ["lm_head.weight"])
    with pytest.raises(HypothesesNotMet, match="c_attn"):
        lambda_max_structured(tiny_gpt2, logp, ["transformer.h.0.attn.c_attn.weight"])


def test_gpt2_per_token_last_mlp_conv1d_is_exact(tiny_gpt2):
    x = torch.randint(0, 31, (12,), generator=torch.Generator().manual_seed(5))
    inp, tgt = x[:-1], x[1:]
    names = ["transformer.h.1.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.bias"]
    G = per_token_scores(tiny_gpt2, names, inp, tgt).G

    def logp():
        return torch.log_softmax(tiny_gpt2(inp[None]).logits[0], -1).gather(-1, tgt[:, None]).reshape(-1)

    K = structured_gram(tiny_gpt2, logp, names)
    K_ref = gram_matrix(G)
    assert float((K - K_ref).abs().max()) <= 64 * G.shape[0] * EPS * float(K_ref.abs().max())


# ---------------------------------------------------------------------- refusals


class HiddenUse(nn.Module):
    """Uses fc.weight both through fc() and directly — invisible to module hooks."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + nn.functional.linear(x, self.fc.weight)


def test_hidden_use_of_a_parameter_is_refused():
    torch.manual_seed(0)
    m = HiddenUse().double()
    X = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(HypothesesNotMet, match="fc.weight.*used 2 time"):
        structured_gram(m, lambda: torch.log_softmax(m(X), -1)[:, 0], ["fc.weight"])


def test_hidden_use_through_functional_call_with_live_tensors_is_refused():
    from torch.func import functional_call

    torch.manual_seed(0)
    m = HiddenUse().double()
    X = torch.randn(5, 4, dtype=torch.float64)
    p = {k: v.detach().requires_grad_(True) for k, v in m.named_parameters()}

    def logp():
        return torch.log_softmax(functional_call(m, p, (X,)), -1)[:, 0]

    with pytest.raises(HypothesesNotMet, match="fc.weight.*used 1 time.*only 0 use"):
        structured_gram(m, logp, ["fc.weight"])


def test_batchnorm_in_training_mode_mixes_samples():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double().train()
    X = torch.randn(8, 4, dtype=torch.float64)
    with pytest.raises(HypothesesNotMet, match="'0.weight'.*influences other samples"):
        structured_gram(m, lambda: torch.log_softmax(m(X), -1)[:, 0], ["0.weight"])


@pytest.mark.parametrize(
    "layer, pname, why",
    [
        (lambda: nn.LayerNorm(4), "weight", "LayerNorm"),
        (lambda: nn.Conv1d(4, 4, 1, groups=2), "weight", "groups=2"),
        (lambda: nn.Embedding(4, 4, max_norm=1.0), "weight", "max_norm"),
    ],
)
def test_unsupported_owners_are_refused(layer, pname, why):
    m = nn.Sequential(layer(), nn.Linear(4, 2))
    with pytest.raises(HypothesesNotMet, match=why):
        structured_gram(m, lambda: torch.zeros(1), [f"0.{pname}"])


def test_aliases_and_bad_arguments():
    m = TiedBag()
    with pytest.raises(InputError, match="same tensor"):
        structured_gram(m, lambda: torch.zeros(1), ["emb.weight", "out.weight"])
    with pytest.raises(InputError):
        structured_gram(m, lambda: torch.zeros(1), ["mid.bias"], check_rows=-1)
    with pytest.raises(InputError, match="autograd graph"):
        structured_gram(m, lambda: torch.zeros(3), ["mid.bias"])


def test_rows_not_assignable_to_samples_are_refused():
    torch.manual_seed(0)
    m = nn.Linear(3, 2).double()
    X = torch.randn(4, 3, 3, dtype=torch.float64)  # (T=4, n=3, d) sequence-first: 12 rows

    def logp():  # one score per column n of the sequence-first layout
        return torch.log_softmax(m(X).sum(0), -1)[:, 0]

    with pytest.raises(HypothesesNotMet, match="cannot be assigned"):
        structured_gram(m, logp, ["weight"])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("path", ["structured-chunked", "explicit-where-possible"])
def test_gram_paths_agree_with_the_reference(name, path, monkeypatch):
    """Row-chunked structured blocks and the explicit per-sample-gradient path give the same K."""
    from torch_checks import engines

    if path == "structured-chunked":
        monkeypatch.setattr(engines, "_BLOCK_ENTRIES", 7)
        monkeypatch.setattr(engines, "_use_explicit", lambda blocks, n: False)
    else:
        monkeypatch.setattr(
            engines,
            "_use_explicit",
            lambda blocks, n: not any(isinstance(u, engines._Index) for _, u, _ in blocks),
        )
    model, X, K_classes, names = _case(name)
    model = model.double().eval()
    X = X.double() if X.is_floating_point() else X
    y = torch.randint(0, K_classes, (X.shape[0],), generator=torch.Generator().manual_seed(1))
    G = per_sample_scores(model, _reference_names(model, names), X, y, dtype=torch.float64).G
    K_ref = gram_matrix(G)

    def logp():
        return torch.log_softmax(model(X), -1).gather(-1, y[:, None]).reshape(-1)

    K = structured_gram(model, logp, names)
    assert float((K - K_ref).abs().max()) <= 64 * G.shape[0] * EPS * float(K_ref.abs().max())


def test_float32_model_is_accepted_to_float32_accuracy():
    model, X, _, names = _case("per-position")
    y = torch.randint(0, 3, (X.shape[0],), generator=torch.Generator().manual_seed(1))

    def logp():
        return torch.log_softmax(model(X), -1).gather(-1, y[:, None]).reshape(-1)

    r = lambda_max_structured(model, logp, names)
    G = per_sample_scores(model, names, X, y, dtype=torch.float64).G
    assert r.value == pytest.approx(lambda_max(G).value, rel=1e-5)
