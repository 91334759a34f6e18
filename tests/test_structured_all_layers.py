"""The per-token structured Gram of every Linear / Conv1D / Embedding of a causal LM (G never
formed on the structured route) equals the Gram of per-token scores formed explicitly by an
autograd loop (one backward per token, float64), on every layer kind and route."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[torch]')")

from fimtheory.errors import HypothesesNotMet, InputError  # noqa: E402
from torch_checks.engines import (  # noqa: E402
    gram_matrix,
    lambda_max_autodiff,
    lambda_max_per_token,
    layer_param_names,
    structured_gram_per_token,
)
from torch_checks.scores import per_sample_scores_loop  # noqa: E402

EPS = torch.finfo(torch.float64).eps


def _reference_gram(model, names, x, y):
    """K = GGᵀ/n with G from one autograd backward per token, window after window (float64)."""
    G = torch.cat([per_sample_scores_loop(model, names, xb, yb, per_token=True).G for xb, yb in zip(x, y)])
    return gram_matrix(G), G


def _assert_close(K, K_ref, n, factor=64):
    scale = float(torch.linalg.matrix_norm(K_ref, 2))
    err = float((K - K_ref).abs().max())
    assert err <= factor * EPS * n * scale, (err, EPS * n * scale)


def _windows(m, T, vocab, seed):
    ctx = torch.randint(0, vocab, (m, T + 1), generator=torch.Generator().manual_seed(seed))
    return ctx[:, :-1], ctx[:, 1:]


def _logp_fn(model, x, y, logits=lambda out: out):
    def logp():
        return torch.log_softmax(logits(model(x)), -1).gather(-1, y[..., None]).squeeze(-1)

    return logp


# ---------------------------------------------------------------------- models as test data


def _byte_lm():
    from torch_checks.models import ByteLM, ByteLMConfig

    torch.manual_seed(1)
    lm = ByteLM(ByteLMConfig.tiny(n_layers=2, d_model=16, d_ff=32, context=8)).double().eval()
    x, y = _windows(3, 8, 256, 0)
    return lm, x, y, _logp_fn(lm, x, y)


def _gpt2():
    transformers = pytest.importorskip("transformers", reason="GPT-2 needs transformers (the [lm] extra)")
    cfg = transformers.GPT2Config(
        vocab_size=23, n_positions=16, n_embd=8, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).double().eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    x, y = _windows(2, 7, 23, 1)
    return model, x, y, _logp_fn(model, x, y, lambda out: out.logits)


class _CausalToy(torch.nn.Module):
    """Embedding (with a padding row) → Linear → causal prefix mean → HF-free Linear head;
    a bias-free Linear and a tied input/output embedding."""

    def __init__(self, vocab=11, d=5, tied=False):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d, padding_idx=0)
        self.fc = torch.nn.Linear(d, d)
        self.mix = torch.nn.Linear(d, d, bias=False)
        self.head = torch.nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.emb.weight

    def forward(self, x):
        h = torch.tanh(self.fc(self.emb(x)))
        T = h.shape[1]
        prefix = torch.cumsum(h, dim=1) / torch.arange(1, T + 1, dtype=h.dtype)[:, None]
        return self.head(torch.tanh(self.mix(prefix)) + h)


def _toy(tied):
    def make():
        torch.manual_seed(2)
        model = _CausalToy(tied=tied).double().eval()
        x, y = _windows(3, 6, 11, 2)
        x[0, 2] = 0  # a padding token: its embedding row receives no gradient
        return model, x, y, _logp_fn(model, x, y)

    return make


CASES = {
    "toy (Embedding with padding_idx, Linear, bias-free Linear)": _toy(False),
    "toy with tied embedding / LM head": _toy(True),
    "byte LM, 2 layers (Linear, token and position Embedding)": _byte_lm,
    "tiny GPT-2 from a config (HF Conv1D, tied wte / lm_head, wpe)": _gpt2,
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    model, x, y, logp = CASES[request.param]()
    names = layer_param_names(model)
    K_ref, G = _reference_gram(model, names, x, y)
    return model, x, y, logp, names, K_ref, G


@pytest.mark.parametrize("path", ["auto", "structured", "explicit"])
def test_every_layer_per_token_gram_equals_the_autograd_loop(case, path):
    model, x, y, logp, names, K_ref, G = case
    sg = structured_gram_per_token(model, logp, names, check_rows=2, path=path)
    assert sg.P == G.shape[1]
    _assert_close(sg.K, K_ref, G.shape[0])
    assert torch.equal(sg.K, sg.K.T)
    assert "H2" in sg.checks
    routes = " ".join(sg.structure)
    assert "diagonal" in routes  # the last layers are followed by position-wise ops only
    if path != "auto":
        assert f"route {path}" in routes or path == "structured"  # multi-use tensors go explicit


@pytest.mark.parametrize("method", ["gram", "lanczos"])
def test_every_layer_per_token_lambda_max(case, method):
    model, x, y, logp, names, K_ref, G = case
    ref = float(torch.linalg.eigvalsh(K_ref)[-1])
    r = lambda_max_per_token(model, logp, names, method=method, tol=1e-12)
    n = G.shape[0]
    assert r.n == n and r.P == G.shape[1]
    assert abs(r.value - ref) <= 1e-10 * ref
    assert r.method.startswith("per-token")


def test_structured_route_is_taken_and_exact_when_forced():
    """On the byte LM's first block the structured contraction (no block of G) is used for
    single-use tensors and agrees with the explicit block route and the loop."""
    model, x, y, logp = _byte_lm()
    names = ["blocks.0.attn.qkv.weight", "blocks.0.mlp.proj.weight", "tok.weight", "pos.weight"]
    K_ref, G = _reference_gram(model, names, x, y)
    sg = structured_gram_per_token(model, logp, names, path="structured")
    assert sum("route structured" in s for s in sg.structure) == 4
    _assert_close(sg.K, K_ref, G.shape[0])


def test_subset_of_layers_and_only_position_wise_layers():
    model, x, y, logp = _byte_lm()
    names = ["head.weight", "blocks.1.mlp.fc.bias"]
    K_ref, G = _reference_gram(model, names, x, y)
    sg = structured_gram_per_token(model, logp, names)
    assert all("diagonal" in s for s in sg.structure)
    _assert_close(sg.K, K_ref, G.shape[0])


class _MixesWindows(torch.nn.Module):
    """Subtracts the batch mean: window b's log-probabilities depend on the other windows."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, 4)
        self.head = torch.nn.Linear(4, 7)

    def forward(self, x):
        h = self.emb(x)
        return self.head(h - h.mean(0, keepdim=True))


def test_interacting_windows_are_refused():
    torch.manual_seed(3)
    model = _MixesWindows().double().eval()
    x, y = _windows(3, 5, 7, 3)
    with pytest.raises(HypothesesNotMet, match="windows interact"):
        structured_gram_per_token(model, _logp_fn(model, x, y), ["emb.weight", "head.weight"])


def test_nondeterministic_forward_is_refused():
    model, x, y, logp = _byte_lm()
    drop = torch.nn.Dropout(0.5).train()

    def noisy():
        return torch.log_softmax(drop(model(x)), -1).gather(-1, y[..., None]).squeeze(-1)

    torch.manual_seed(0)
    with pytest.raises(HypothesesNotMet, match="changed log p"):
        structured_gram_per_token(model, noisy, ["head.weight"])


def test_bad_arguments():
    model, x, y, logp = _byte_lm()
    with pytest.raises(InputError, match=r"\(m, T\)"):
        structured_gram_per_token(model, lambda: logp().reshape(-1), ["head.weight"])
    with pytest.raises(InputError, match="unknown path"):
        structured_gram_per_token(model, logp, ["head.weight"], path="fast")
    with pytest.raises(InputError, match="target_chunk"):
        structured_gram_per_token(model, logp, ["head.weight"], target_chunk=0)
    with pytest.raises(InputError, match="NaN"):
        structured_gram_per_token(model, lambda: logp() * math.nan, ["head.weight"])
    with pytest.raises(HypothesesNotMet, match="LayerNorm"):
        structured_gram_per_token(model, logp, ["blocks.0.ln1.weight"])


def test_target_chunks_do_not_change_the_result():
    model, x, y, logp = _byte_lm()
    names = layer_param_names(model)
    K1 = structured_gram_per_token(model, logp, names, target_chunk=1).K
    K8 = structured_gram_per_token(model, logp, names, target_chunk=8).K
    assert float((K1 - K8).abs().max()) <= 64 * EPS * K1.shape[0] * float(torch.linalg.matrix_norm(K8, 2))


# ---------------------------------------------------------------------- matrix-free, any layer


def _all_param_names(model):
    return tuple(k for k, _ in model.named_parameters())  # tied tensors once; LayerNorms included


class _ConvNetWithSpare(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Conv2d(1, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 4))
        self.spare = torch.nn.Linear(2, 2)  # held by the model, never called

    def forward(self, x):
        return self[3](self[2](self[1](self[0](x))))


@pytest.mark.parametrize("every_parameter", [False, True], ids=["layers", "every parameter"])
def test_autodiff_lanczos_equals_the_autograd_loop(case, every_parameter):
    """λ_max by Lanczos on K with Gᵀv by backward and G w by reverse-over-reverse equals the top
    eigenvalue of the float64 per-token autograd loop, on every layer kind (and LayerNorm)."""
    model, x, y, logp, names, K_ref, G = case
    if every_parameter:
        names = _all_param_names(model)
        K_ref, G = _reference_gram(model, names, x, y)
    ref = float(torch.linalg.eigvalsh(K_ref)[-1])
    r = lambda_max_autodiff(model, logp, names, tol=1e-12)
    assert r.n == G.shape[0] and r.P == G.shape[1]
    assert r.method == "autodiff-lanczos" and r.operator == "K"
    assert abs(r.value - ref) <= 1e-10 * ref, (r.value, ref)
    assert r.residual <= 1e-9 * ref
    assert "held on all" in r.structure[0]
    dropped = int(r.structure[1].split(": ")[1].split(" ")[0])
    assert dropped > 0 and "not kept" in r.structure[1]


def test_autodiff_lanczos_first_backward_keeps_no_cotangent_dependent_tensor(case):
    """The graph of u ↦ Gᵀu keeps no saved tensor that depends on u (the backpropagated signals
    are autograd's largest saved tensors; G w never reads them): recorded with the same pruning
    hooks, every tensor still saved there is one that does not depend on u, and the product G w
    from the pruned graph equals the dense float64 G times w."""
    from torch_checks.engines import _CotangentPruner, _resolve_theta

    model, x, y, logp, names, K_ref, G = case
    thetas = [t for _, t in _resolve_theta(model, names)[0]]
    flat = logp().reshape(-1)
    u = torch.zeros(flat.numel(), dtype=flat.dtype, requires_grad=True)
    pruner = _CotangentPruner(u)
    kept = []

    def pack(t):
        out = pruner.pack(t)
        if out is t:
            kept.append(t)
        return out

    with torch.autograd.graph.saved_tensors_hooks(pack, pruner.unpack):
        gt = torch.autograd.grad(flat, thetas, grad_outputs=u, create_graph=True)
    assert pruner.dropped > 0
    for t in kept:  # not differentiable in u: a u-dependent tensor would have a u-reaching graph
        assert t is not u
        if t.requires_grad:
            (d,) = torch.autograd.grad(t.sum(), u, retain_graph=True, allow_unused=True)
            assert d is None or not bool(d.any())
    w = [torch.randn(t.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) for t in thetas]
    (Gw,) = torch.autograd.grad(gt, u, grad_outputs=w)
    ref = G @ torch.cat([t.reshape(-1) for t in w])
    assert torch.allclose(Gw, ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))


class _CotangentReadingDoubleBackward(torch.autograd.Function):
    """y = x²; the backward multiplies by sign(grad_output) (not linear in grad_output), so its
    derivative in grad_output reads a tensor that depends on the cotangent."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g * torch.sign(g + 1.0)


def _autodiff_lanczos_through(fn):
    """lambda_max_autodiff on a small Linear whose logits pass through the autograd.Function fn."""
    torch.manual_seed(4)
    lin = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)

    def logp():
        return torch.log_softmax(fn.apply(lin(x)), -1)[:, 0]

    return lambda_max_autodiff(lin, logp, ("weight", "bias"))


def test_autodiff_lanczos_refuses_a_double_backward_that_reads_the_cotangent():
    with pytest.raises(HypothesesNotMet, match="not finite"):
        _autodiff_lanczos_through(_CotangentReadingDoubleBackward)


def test_autodiff_lanczos_per_sample_classifier_and_unused_tensor():
    """Independent samples (a CNN with a conv and a linear layer): λ_max equals the dense F; a
    θ tensor that does not reach log p is reported with zero scores."""
    torch.manual_seed(3)
    net = _ConvNetWithSpare().double()
    x = torch.randn(7, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    names = ("0.weight", "0.bias", "3.weight", "spare.weight")
    live = names[:3]
    G = torch.cat([per_sample_scores_loop(net, live, x[i : i + 1], y[i : i + 1]).G for i in range(7)])
    ref = float(torch.linalg.eigvalsh(G.T @ G / 7)[-1])

    def logp():
        return torch.log_softmax(net(x), -1).gather(-1, y[:, None]).squeeze(-1)

    r = lambda_max_autodiff(net, logp, names, tol=1e-12)
    assert abs(r.value - ref) <= 1e-10 * ref
    assert r.P == G.shape[1] + 4 and "spare.weight" in r.structure[-1]


class _WrongDoubleBackward(torch.autograd.Function):
    """y = x²; the backward is right, but its own derivative in grad_output is dropped."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g.detach() + 0.5 * x * g


class _NoDoubleBackward(_WrongDoubleBackward):
    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


@pytest.mark.parametrize("fn", [_WrongDoubleBackward, _NoDoubleBackward], ids=["wrong", "missing"])
def test_autodiff_lanczos_refuses_a_bad_double_backward(fn):
    with pytest.raises(HypothesesNotMet, match="reverse-over-reverse|not differentiable"):
        _autodiff_lanczos_through(fn)


def test_autodiff_lanczos_bad_input():
    torch.manual_seed(5)
    lin = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(InputError, match="callable"):
        lambda_max_autodiff(lin, 3.0, ("weight",))
    with pytest.raises(InputError, match="graph"):
        lambda_max_autodiff(lin, lambda: lin(x).detach()[:, 0], ("weight",))
    with pytest.raises(InputError, match="NaN or inf"):
        lambda_max_autodiff(lin, lambda: lin(x)[:, 0] * math.inf, ("weight",))
    with pytest.raises(InputError, match="non-empty"):
        lambda_max_autodiff(lin, lambda: lin(x)[:0, 0], ("weight",))
    drop = torch.nn.Sequential(lin, torch.nn.Dropout(0.5)).train()
    with pytest.raises(InputError, match="training mode"):
        lambda_max_autodiff(drop, lambda: drop(x)[:, 0], ("0.weight",))
    assert lambda_max_autodiff(drop.eval(), lambda: drop(x)[:, 0], ("0.weight",)).value > 0


def test_autodiff_lanczos_frozen_parameters_batch_norm_and_reproducibility():
    """θ tensors with requires_grad=False are scored and left frozen; batch-norm in training mode
    (samples interact) is refused; a seed fixes the result bit for bit; max_iter caps the steps."""
    torch.manual_seed(6)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double().eval()
    x = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    names = ("0.weight", "0.bias", "2.weight", "2.bias")
    G = torch.cat([per_sample_scores_loop(net, names, x[i : i + 1], y[i : i + 1]).G for i in range(9)])
    ref = float(torch.linalg.eigvalsh(G @ G.T / 9)[-1])
    for p in net.parameters():
        p.requires_grad_(False)

    def logp():
        return torch.log_softmax(net(x), -1).gather(-1, y[:, None]).squeeze(-1)

    r1 = lambda_max_autodiff(net, logp, names, tol=1e-12, seed=3)
    r2 = lambda_max_autodiff(net, logp, names, tol=1e-12, seed=3)
    assert abs(r1.value - ref) <= 1e-10 * ref and r1.value == r2.value
    assert not any(p.requires_grad for p in net.parameters())
    capped = lambda_max_autodiff(net, logp, names, tol=1e-12, max_iter=2)
    assert capped.iterations == 2 and capped.value <= ref * (1 + 1e-12)
    bn = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).double().train()
    with pytest.raises(InputError, match="BatchNorm1d in training mode"):
        lambda_max_autodiff(bn, lambda: bn(x)[:, 0], ("0.weight",))
