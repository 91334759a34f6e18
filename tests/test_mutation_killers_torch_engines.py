"""Mutation killers for torch_checks.engines (the λ_max engines: dense / Gram / Lanczos on G,
the structured per-sample and per-token Grams, the reverse-over-reverse autodiff path and its
cotangent pruner). Each test was written from a surviving mutant of the torch-engines mutmut
run and checked to fail on that mutant and pass on the original (docs/mutation_torch_engines.md
lists them).

References are independent of the code under test: dense float64 eigendecompositions (numpy),
per-sample scores from one torch.autograd.grad per sample written here, closed forms (the
Rayleigh quotient of the seeded start vector, exact power-of-two scalings).
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import HypothesesNotMet, InputError  # noqa: E402
from torch_checks import engines as ENG  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64
EPS = float(np.finfo(np.float64).eps)


@pytest.fixture(autouse=True)
def _mutant_time_limit():
    """Under a mutant (``MUTANT_UNDER_TEST`` set, as in a kill check, which has no timeout of its
    own), a test that runs past 30 s fails instead of stalling the check (a mutant that loops)."""
    import os
    import signal

    if not os.environ.get("MUTANT_UNDER_TEST") or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _stop(signum, frame):
        raise TimeoutError("test ran past 30 s under a mutant")

    previous = signal.signal(signal.SIGALRM, _stop)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _psd(dim, seed, top=None):
    """A symmetric PSD matrix Q diag(d) Qᵀ with a separated top eigenvalue (float64) and d."""
    g = _gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    d = torch.linspace(0.0, 1.0, dim, dtype=F64)
    if top is not None:
        d[-1] = top
    A = (Q * d) @ Q.T
    return 0.5 * (A + A.T), d


def _start(dim, seed=0):
    """The documented Lanczos start: a float64 Gaussian drawn on the CPU from ``seed``, normalised."""
    q = torch.randn(dim, generator=_gen(seed), dtype=F64)
    return q / torch.linalg.vector_norm(q)


def _np_top(A):
    return float(np.linalg.eigvalsh(np.asarray(A, dtype=np.float64))[-1])


# --------------------------------------------------------------------------------------
# lanczos
# --------------------------------------------------------------------------------------


def test_lanczos_dim_below_one_is_refused_with_the_value():
    with pytest.raises(InputError) as exc:
        ENG.lanczos(lambda v: v, 0)
    assert str(exc.value) == "dim must be >= 1, got 0"
    r = ENG.lanczos(lambda v: 3.0 * v, 1)  # dim 1 is valid: exact after one step
    assert r.value == pytest.approx(3.0, rel=1e-15, abs=0) and r.iterations == 1 and r.converged


def test_lanczos_ritz_pair_against_a_dense_eigh():
    """On a 40×40 PSD matrix with a separated top: the value is the top eigenvalue to within the
    residual, the vector is a unit float64 vector along the top eigenvector, the residual is
    ‖Ay − θy‖ recomputed here, and the stop came from the residual test (estimate ≤ tol·θ)."""
    A, d = _psd(40, 1, top=2.0)
    ref = _np_top(A)
    r = ENG.lanczos(lambda v: A @ v, 40, tol=1e-12, seed=3)
    assert r.converged and 1 < r.iterations < 40
    assert r.vector.dtype == F64 and r.vector.shape == (40,)
    assert abs(float(torch.linalg.vector_norm(r.vector)) - 1.0) <= 1e-13
    res = float(torch.linalg.vector_norm(A @ r.vector - r.value * r.vector))
    assert r.residual == pytest.approx(res, rel=1e-6, abs=1e-15)
    assert r.residual <= 1e-10 * ref
    assert abs(r.value - ref) <= r.residual + 64 * EPS * ref
    assert r.residual_estimate <= 1e-12 * ref
    top = torch.linalg.eigh(A).eigenvectors[:, -1]
    assert abs(abs(float(top @ r.vector)) - 1.0) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lanczos_first_step_is_the_rayleigh_quotient_of_the_seeded_start(dtype):
    """max_iter=1: θ = qᵀAq for q the normalised float64 Gaussian of the seed (default 0), cast
    to the dtype; y = q; not converged; the estimate is ‖Aq − θq‖ (= β₁ after reorthogonalisation)."""
    A, _ = _psd(7, 2, top=3.0)
    A = A.to(dtype)
    for seed, kw in ((0, {}), (5, {"seed": 5})):
        q = _start(7, seed).to(dtype)
        r = ENG.lanczos(lambda v: A @ v, 7, dtype=dtype, max_iter=1, **kw)
        rq = float(q.double() @ A.double() @ q.double())
        tol = 1e-13 if dtype == F64 else 1e-5
        assert r.value == pytest.approx(rq, rel=tol, abs=0)
        assert r.vector.dtype == dtype
        assert float((r.vector.double() - q.double()).abs().max()) <= tol
        assert (r.iterations, r.converged) == (1, False)
        res = float(torch.linalg.vector_norm(A.double() @ q.double() - rq * q.double()))
        assert r.residual == pytest.approx(res, rel=tol * 100, abs=0)
        assert r.residual_estimate == pytest.approx(res, rel=tol * 100, abs=0)


def test_lanczos_is_invariant_under_power_of_two_scaling():
    """Scaling A by 2^±60 scales every quantity of the iteration exactly: same steps, same
    convergence, θ and the residuals scaled by the same power of two (the stopping tests are
    relative to the largest |θ|, |α|, β seen, never to 1)."""
    A, _ = _psd(30, 4, top=1.5)
    base = ENG.lanczos(lambda v: A @ v, 30, tol=1e-12, seed=1)
    for e in (-60, 60):
        c = 2.0**e
        As = A * c
        r = ENG.lanczos(lambda v, As=As: As @ v, 30, tol=1e-12, seed=1)
        assert (r.iterations, r.converged) == (base.iterations, base.converged)
        assert r.value == base.value * c
        # (the tridiagonal eigenvector comes from LAPACK, which rescales internally: to rounding)
        assert r.residual_estimate == pytest.approx(base.residual_estimate * c, rel=1e-6, abs=0)
        assert float((r.vector - base.vector).abs().max()) <= 1e-12


def test_lanczos_tolerance_and_iteration_cap():
    A, _ = _psd(60, 5, top=1.2)
    ref = _np_top(A)

    def op(v):
        return A @ v

    default = ENG.lanczos(op, 60)
    explicit = ENG.lanczos(op, 60, tol=1e-10, seed=0)
    assert (default.value, default.iterations, default.residual) == (
        explicit.value,
        explicit.iterations,
        explicit.residual,
    )
    assert default.residual_estimate <= 1e-10 * ref
    loose = ENG.lanczos(op, 60, tol=1e-3)
    tight = ENG.lanczos(op, 60, tol=1e-13)
    assert loose.converged and tight.converged
    assert loose.iterations < tight.iterations
    assert loose.residual_estimate <= 1e-3 * ref and tight.residual_estimate <= 1e-13 * ref * 1.01
    capped = ENG.lanczos(op, 60, tol=1e-13, max_iter=3)
    assert (capped.iterations, capped.converged) == (3, False)
    assert capped.value <= ref * (1 + 1e-14)
    # more steps than the dimension: stops at the dimension, exact (the whole space is spanned)
    d = torch.tensor([0.5, 1.0, 2.0, 4.0, 3.0], dtype=F64)
    full = ENG.lanczos(lambda v: d * v, 5, tol=0.0, max_iter=50)
    assert full.iterations <= 5 and full.converged
    assert full.value == pytest.approx(4.0, rel=1e-14, abs=0)


def test_lanczos_default_cap_is_500_steps():
    """A top cluster of 400 eigenvalues within 1e-6 cannot be resolved to 64·eps in 500 steps:
    the default max_iter (min(dim, 500)) stops there, unconverged, with a value ≤ λ_max."""
    d = torch.cat([torch.linspace(0.0, 0.5, 600, dtype=F64), 1.0 - 1e-6 * torch.linspace(0, 1, 400, dtype=F64)])
    r = ENG.lanczos(lambda v: d * v, 1000, tol=0.0)
    assert (r.iterations, r.converged) == (500, False)
    assert r.value >= 1.0 - 1e-6 and r.value <= 1.0 + 1e-15


def test_lanczos_breakdown_and_zero_operator():
    """Three distinct eigenvalues: the Krylov space is invariant after 3 steps (β ≈ 0), the Ritz
    values are eigenvalues. The zero operator stops at once with θ = 0."""
    d = torch.tensor([1.0, 2.0, 5.0] * 10, dtype=F64)
    r = ENG.lanczos(lambda v: d * v, 30, tol=0.0)
    assert (r.iterations, r.converged) == (3, True)
    assert r.value == pytest.approx(5.0, rel=1e-14, abs=0)
    assert r.residual <= 1e-13
    z = ENG.lanczos(lambda v: torch.zeros_like(v), 9)
    assert (z.value, z.iterations, z.converged, z.residual) == (0.0, 1, True, 0.0)
    assert abs(float(torch.linalg.vector_norm(z.vector)) - 1.0) <= 1e-14


# --------------------------------------------------------------------------------------
# lambda_max: the method choice, what reaches the eigensolvers, the reported residual
# --------------------------------------------------------------------------------------


def _spy(monkeypatch):
    """Replace the heavy kernels by recorders, so that the shape thresholds of ``auto`` (2048,
    4096) can be exercised on zero-stride tensors."""
    seen = {}

    def fisher(G):
        seen["built"] = ("F", tuple(G.shape))
        return torch.zeros(2, 2, dtype=G.dtype)

    def gram(G, block_size=2048):
        seen["built"] = ("K", tuple(G.shape))
        seen["block_size"] = block_size
        return torch.zeros(2, 2, dtype=G.dtype)

    def top_eigh(A, want_vector=True):
        seen["want_vector"] = want_vector
        return 1.25, (torch.ones(2, dtype=A.dtype) if want_vector else None), 0.5

    def lanczos(matvec, dim, **kw):
        seen["built"] = ("lanczos", dim)
        seen["lanczos"] = kw
        return ENG.LanczosResult(1.5, torch.ones(dim, dtype=kw["dtype"]), 7, 0.25, 0.1, True)

    monkeypatch.setattr(ENG, "_fisher", fisher)
    monkeypatch.setattr(ENG, "_gram", gram)
    monkeypatch.setattr(ENG, "_top_eigh", top_eigh)
    monkeypatch.setattr(ENG, "lanczos", lanczos)
    return seen


@pytest.mark.parametrize(
    ("n", "P", "method"),
    [
        (2048, 2048, "dense"),
        (2049, 2048, "dense"),
        (2049, 2049, "gram"),
        (2048, 2049, "gram"),
        (4096, 4097, "gram"),
        (4097, 4096, "gram"),
        (4097, 4097, "lanczos"),
    ],
)
def test_auto_thresholds_are_the_documented_defaults(monkeypatch, n, P, method):
    """auto: dense if P ≤ n and P ≤ 2048; else gram if min(n, P) ≤ 4096; else lanczos."""
    seen = _spy(monkeypatch)
    G = torch.zeros((), dtype=F64).expand(n, P)
    r = ENG.lambda_max(G)
    assert r.method == method and (r.n, r.P) == (n, P)
    if method == "dense":
        assert seen["built"] == ("F", (n, P)) and r.operator == "F" and seen["want_vector"] is False
    elif method == "gram":
        assert seen["built"] == ("K", (n, P)) and r.operator == "K" and seen["block_size"] == 2048
    else:
        assert seen["built"] == ("lanczos", min(n, P)) and r.iterations == 7
        assert seen["lanczos"] == {"dtype": F64, "device": G.device, "tol": 1e-10, "max_iter": None, "seed": 0}


@pytest.mark.parametrize(
    ("n", "P", "dense_max", "gram_max", "method"),
    [
        (6, 5, 5, 9, "dense"),
        (6, 5, 4, 9, "gram"),
        (6, 5, 4, 5, "gram"),
        (6, 5, 4, 4, "lanczos"),
        (5, 6, 9, 5, "gram"),
        (5, 6, 9, 4, "lanczos"),
        (5, 5, 5, 4, "dense"),
    ],
)
def test_auto_thresholds_passed_by_the_caller(monkeypatch, n, P, dense_max, gram_max, method):
    seen = _spy(monkeypatch)
    r = ENG.lambda_max(torch.ones(n, P, dtype=F64), dense_max=dense_max, gram_max=gram_max, block_size=3)
    assert r.method == method
    if method == "gram":
        assert seen["block_size"] == 3


def test_lambda_max_passes_the_lanczos_options_on(monkeypatch):
    seen = _spy(monkeypatch)
    G = torch.ones(4, 6, dtype=torch.float32)
    r = ENG.lambda_max(G, method="lanczos", tol=1e-4, max_iter=9, seed=11, return_vector=True)
    assert seen["lanczos"] == {"dtype": torch.float32, "device": G.device, "tol": 1e-4, "max_iter": 9, "seed": 11}
    assert (r.value, r.iterations, r.residual, r.operator) == (1.5, 7, 0.25, "K")
    assert r.vector.shape == (6,)  # mapped from R^n to R^P through Gᵀu


@pytest.mark.parametrize(("n", "P", "operator"), [(12, 30, "K"), (30, 12, "F"), (15, 15, "K")])
def test_lambda_max_lanczos_is_lanczos_on_the_smaller_operator(n, P, operator):
    """The Lanczos path equals lanczos() on v ↦ G(Gᵀv)/n (n ≤ P) or v ↦ Gᵀ(Gv)/n (n > P) written
    here, bit for bit, with the options passed on; the value agrees with numpy's eigvalsh."""
    G = torch.randn(n, P, generator=_gen(n * P), dtype=F64)
    Gn = G.numpy()
    ref = _np_top(Gn @ Gn.T / n)
    if operator == "K":

        def op(v):
            return G @ (G.T @ v) / n

    else:

        def op(v):
            return G.T @ (G @ v) / n

    for kw in ({}, {"tol": 1e-4, "seed": 3}, {"max_iter": 2, "seed": 1}):
        r = ENG.lambda_max(G, method="lanczos", **kw)
        direct = ENG.lanczos(op, min(n, P), dtype=F64, **kw)
        assert (r.value, r.iterations, r.residual, r.operator) == (
            direct.value,
            direct.iterations,
            direct.residual,
            operator,
        )
        assert r.value <= ref * (1 + 1e-13)
    assert ENG.lambda_max(G, method="lanczos").value == pytest.approx(ref, rel=1e-10, abs=0)


@pytest.mark.parametrize("method", ["dense", "gram"])
def test_eigh_paths_report_the_backward_error_bound_or_the_residual(method):
    """Without a vector the residual is the a-priori bound m·eps·‖A‖_F (A = F, m = P for dense;
    A = K, m = n for gram); with one it is ‖A v − λ v‖ for the returned unit eigenvector."""
    G = torch.randn(9, 14, generator=_gen(3), dtype=F64)
    Gn = G.numpy()
    A = Gn.T @ Gn / 9 if method == "dense" else Gn @ Gn.T / 9
    ref = _np_top(A)
    r = ENG.lambda_max(G, method=method)
    assert r.value == pytest.approx(ref, rel=1e-13, abs=0)
    assert r.residual == pytest.approx(A.shape[0] * EPS * np.linalg.norm(A, "fro"), rel=1e-12, abs=0)
    rv = ENG.lambda_max(G, method=method, return_vector=True)
    v = rv.vector.numpy()
    F = Gn.T @ Gn / 9
    assert rv.value == pytest.approx(ref, rel=1e-13, abs=0)
    assert abs(np.linalg.norm(v) - 1.0) <= 1e-13
    assert np.linalg.norm(F @ v - ref * v) <= 1e-12 * ref
    assert 0.0 <= rv.residual <= 64 * EPS * A.shape[0] * ref


def test_gram_vector_of_zero_scores_and_gram_blocks():
    """Gᵀu of zero scores is the zero vector (not NaN); K is the same for every block size and
    exactly symmetric; F is GᵀG/n, exactly symmetric."""
    r = ENG.lambda_max(torch.zeros(3, 5, dtype=F64), method="gram", return_vector=True)
    assert r.value == 0.0 and torch.equal(r.vector, torch.zeros(5, dtype=F64))
    G = torch.randn(11, 4, generator=_gen(8), dtype=F64)
    ref = G.numpy() @ G.numpy().T / 11
    for b in (1, 3, 11, 50):
        K = ENG.gram_matrix(G, block_size=b)
        assert torch.equal(K, K.T)
        assert np.abs(K.numpy() - ref).max() <= 16 * EPS * np.abs(ref).max()
    F = ENG.fisher_matrix(G)
    assert torch.equal(F, F.T)
    assert np.abs(F.numpy() - G.numpy().T @ G.numpy() / 11).max() <= 16 * EPS * 4 * float(F.abs().max())
    with pytest.raises(InputError, match="non-empty 2-D"):
        ENG.fisher_matrix(torch.zeros(3, dtype=F64))
    with pytest.raises(InputError, match="non-empty 2-D"):
        ENG.gram_matrix(torch.zeros(3, dtype=F64))


def test_validate_full_scan_only_for_a_non_finite_sum():
    """A finite G whose sum overflows is valid (the full scan finds no bad entry); a single
    ±inf or NaN is reported at its index."""
    G = torch.full((2, 3), 1e308, dtype=F64)
    assert ENG._validate(G) is G
    for bad, idx in ((math.inf, (0, 1)), (-math.inf, (1, 0)), (math.nan, (1, 2))):
        H = torch.ones(2, 3, dtype=F64)
        H[idx] = bad
        with pytest.raises(InputError) as exc:
            ENG._validate(H)
        assert str(exc.value) == f"G has a NaN or inf entry at index {idx}"
    for G, msg in (
        (torch.zeros(3, 0), "G must be a non-empty 2-D (n, P) tensor, got shape (3, 0)"),
        (torch.zeros(1, 1, 1), "G must be a non-empty 2-D (n, P) tensor, got shape (1, 1, 1)"),
        (torch.zeros(2, 2, dtype=torch.complex128), "G must be a real floating tensor, got torch.complex128"),
    ):
        with pytest.raises(InputError) as exc:
            ENG._validate(G)
        assert str(exc.value) == msg
    one = torch.ones(1, 1, dtype=F64)
    assert ENG._validate(one) is one


def test_unknown_method_message():
    with pytest.raises(InputError) as exc:
        ENG.lambda_max(torch.ones(2, 2, dtype=F64), method="power")
    assert str(exc.value) == "unknown method 'power'; expected one of ('auto', 'dense', 'gram', 'lanczos')"


def test_gram_vector_is_normalised_whatever_the_scale_of_the_scores():
    """‖Gᵀu‖ < 1 (small scores) still gives a unit top eigenvector of F."""
    G = 1e-3 * torch.randn(5, 9, generator=_gen(4), dtype=F64)
    r = ENG.lambda_max(G, method="gram", return_vector=True)
    assert abs(float(torch.linalg.vector_norm(r.vector)) - 1.0) <= 1e-13
    F = G.T @ G / 5
    assert float(torch.linalg.vector_norm(F @ r.vector - r.value * r.vector)) <= 1e-10 * r.value


# --------------------------------------------------------------------------------------
# references for the model-based engines: one autograd backward per sample, dense eigh
# --------------------------------------------------------------------------------------


def _loop_G(logp_of, params, n):
    """G (n × P) with row i = ∇θ logp_of(i), one torch.autograd.grad per sample (float64)."""
    rows = []
    for i in range(n):
        g = torch.autograd.grad(logp_of(i), params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if d is None else d).reshape(-1) for p, d in zip(params, g)]))
    return torch.stack(rows).double()


def _gram_ref(G):
    """K_ref = G Gᵀ/n in float64 numpy, n = the number of rows of G."""
    Gn = G.detach().numpy()
    return Gn @ Gn.T / Gn.shape[0]


def _params(model, names):
    """The tensors ``names`` of ``model.named_parameters()``, in that order."""
    own = dict(model.named_parameters())
    return [own[k] for k in names]


def _causal_lm(cls, seed, m, T, vocab, dtype=F64):
    """``cls()`` built after ``torch.manual_seed(seed)``, cast to ``dtype``, in eval mode, and m
    windows of T + 1 tokens below ``vocab`` from a generator seeded ``seed``: (lm, ctx, x, y) with
    x = ctx[:, :-1], y = ctx[:, 1:] (views of ctx)."""
    torch.manual_seed(seed)
    lm = cls().to(dtype).eval()
    ctx = torch.randint(0, vocab, (m, T + 1), generator=_gen(seed))
    return lm, ctx, ctx[:, :-1], ctx[:, 1:]


def _next_token_logps(lm, x, y):
    """A causal LM's next-token log-likelihoods on contexts x (m × T) with targets y: ``logp()``
    all m·T of them at once (batched), ``logp_of(i)`` the i-th (sequence i // T, position i % T)
    from a forward of its sequence alone (the loop reference's one sample)."""
    T = x.shape[1]

    def logp():
        return torch.log_softmax(lm(x), -1).gather(-1, y[..., None]).squeeze(-1)

    def logp_of(i):
        b, t = divmod(i, T)
        return torch.log_softmax(lm(x[b : b + 1]), -1)[0, t, y[b, t]]

    return logp, logp_of


def _ref_lam(G):
    return _np_top(_gram_ref(G))


class _MLPWithSpare(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.out = torch.nn.Linear(4, 3)
        self.spare = torch.nn.Linear(2, 2)  # never called

    def forward(self, x):
        return self.out(torch.tanh(self.fc(x)))


def _classifier(n=6, scale=1.0, dtype=F64):
    torch.manual_seed(7)
    net = _MLPWithSpare().to(dtype).eval()
    x = torch.randn(n, 3, generator=_gen(2), dtype=F64).to(dtype)
    y = torch.arange(n) % 3

    def logp():
        return scale * torch.log_softmax(net(x), -1).gather(-1, y[:, None]).squeeze(-1)

    def logp_of(i):
        return scale * torch.log_softmax(net(x[i : i + 1]), -1)[0, y[i]]

    return net, logp, logp_of


NAMES = ("fc.weight", "fc.bias", "out.weight", "out.bias")


# --------------------------------------------------------------------------------------
# lambda_max_autodiff
# --------------------------------------------------------------------------------------


def test_autodiff_result_against_the_loop_and_its_records():
    net, logp, logp_of = _classifier()
    params = _params(net, NAMES)
    G = _loop_G(logp_of, params, 6)
    ref = _ref_lam(G)
    r = ENG.lambda_max_autodiff(net, logp, NAMES, tol=1e-12, seed=2)
    assert r.value == pytest.approx(ref, rel=1e-10, abs=0)
    assert (r.method, r.n, r.P, r.operator, r.vector) == ("autodiff-lanczos", 6, G.shape[1], "K", None)
    assert r.residual <= 1e-9 * ref and r.iterations >= 1
    head = (
        f"4 θ tensor(s), P = {G.shape[1]}: Gᵀv by backward, G w by reverse-over-reverse on one recorded "
        f"forward; ⟨G Gᵀv, v⟩ = ‖Gᵀv‖² held on all {r.iterations + 1} products (worst relative gap "
    )
    assert r.structure[0].startswith(head) and r.structure[0].endswith(")")
    worst = float(r.structure[0][len(head) : -1])
    assert 0.0 <= worst <= 4096 * EPS
    assert len(r.structure) == 2 and r.structure[1].startswith("first backward's graph: ")
    assert all(p.requires_grad for p in net.parameters())  # trainable tensors stay trainable
    # defaults: tol 1e-10, seed 0 (and another seed is another start)
    d = ENG.lambda_max_autodiff(net, logp, NAMES)
    e = ENG.lambda_max_autodiff(net, logp, NAMES, tol=1e-10, seed=0)
    assert (d.value, d.iterations, d.residual) == (e.value, e.iterations, e.residual)
    o = ENG.lambda_max_autodiff(net, logp, NAMES, tol=1e-10, seed=1)
    assert (o.value, o.iterations, o.residual) != (e.value, e.iterations, e.residual)
    assert d.value == pytest.approx(ref, rel=1e-9, abs=0)


def test_autodiff_unused_tensors_and_no_live_tensor():
    net, logp, logp_of = _classifier()
    names = (*NAMES, "spare.weight")
    r = ENG.lambda_max_autodiff(net, logp, names, tol=1e-12)
    assert r.structure[-1] == "not reaching log p (zero scores): spare.weight"
    assert r.P == 3 * 4 + 4 + 4 * 3 + 3 + 4
    z = ENG.lambda_max_autodiff(net, logp, ("spare.weight", "spare.bias"))
    assert z == ENG.LambdaMaxResult(
        0.0, "autodiff-lanczos", 0, 0.0, 6, 6, "K", None, ("no θ tensor reaches log p: every score is zero",)
    )


@pytest.mark.parametrize("scale", [1e3, 1e-3])
def test_autodiff_transpose_check_is_relative_to_the_scale(scale):
    """Scores scaled by 10^±3: λ scales by 10^±6, no false refusal (the check is relative), and
    the recorded worst gap is a positive rounding-level number whatever the scale."""
    net, logp, logp_of = _classifier(scale=scale)
    params = _params(net, NAMES)
    ref = _ref_lam(_loop_G(logp_of, params, 6))
    r = ENG.lambda_max_autodiff(net, logp, NAMES, tol=1e-12)
    assert r.value == pytest.approx(ref, rel=1e-10, abs=0)
    worst = float(r.structure[0].rsplit("worst relative gap ", 1)[1][:-1])
    assert 0.0 < worst <= 4096 * EPS


class _ZeroBackward(torch.autograd.Function):
    """Identity whose backward declares a zero gradient computed from the input alone (it does
    not read the cotangent): Gᵀu then has a graph to θ but none to u."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.clone()

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return 0.0 * z


def test_autodiff_scores_that_are_zero_by_the_backward_give_zero():
    torch.manual_seed(4)
    lin = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=F64, generator=_gen(1))

    def logp():
        return torch.log_softmax(_ZeroBackward.apply(lin(x)), -1)[:, 0]

    r = ENG.lambda_max_autodiff(lin, logp, ("weight", "bias"))
    assert (r.value, r.method, r.n, r.P) == (0.0, "autodiff-lanczos", 5, 8)
    assert r.residual == 0.0 and r.iterations == 1


class _SlightlyWrongDoubleBackward(torch.autograd.Function):
    """y = x²; the backward's value is right but its derivative in grad_output is off by a
    relative 1e-8: far above 4096·eps(float64), far below any float32 tolerance."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2e-8 * x * g.detach() + (2 - 2e-8) * x * g


class _CotangentReading(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g * torch.sign(g + 1.0)


class _DetachedBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 2.0 * g.detach()


def _through(fn, names=("weight", "bias")):
    torch.manual_seed(4)
    lin = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=F64, generator=_gen(1))
    return ENG.lambda_max_autodiff(lin, lambda: torch.log_softmax(fn.apply(lin(x)), -1)[:, 0], names)


def test_autodiff_refusals_name_the_problem_exactly():
    with pytest.raises(HypothesesNotMet) as exc:
        _through(_SlightlyWrongDoubleBackward)
    msg = str(exc.value)
    assert msg.startswith(
        "the reverse-over-reverse product G w is not the transpose of the backward Gᵀv (⟨G Gᵀv, v⟩ = "
    )
    assert msg.endswith(
        "): an operation in the forward has a wrong or non-linear double-backward formula; use a G-based or "
        "structured path"
    )
    with pytest.raises(HypothesesNotMet) as exc:
        _through(_CotangentReading)
    assert str(exc.value) == (
        "the reverse-over-reverse product G w is not finite: a double-backward formula of an operation "
        "in the forward reads a tensor that depends on the cotangent (or overflows); use a G-based or "
        "structured path"
    )
    with pytest.raises(HypothesesNotMet) as exc:
        _through(_DetachedBackward)
    assert str(exc.value) == (
        "the backward to 'weight', 'bias' is not differentiable (an operation in the forward has a backward "
        "that autograd cannot differentiate again, e.g. a custom Function with once_differentiable or a "
        "detached backward): G w cannot be taken by reverse-over-reverse; use a G-based or structured path"
    )


def test_autodiff_input_errors_name_the_problem_exactly():
    net, logp, _ = _classifier()
    cases = [
        (3.0, "logp must be a callable returning log-probabilities, got float"),
        (lambda: [1.0], "logp() must return a non-empty floating tensor, got list"),
        (lambda: torch.zeros(4, dtype=torch.long), "logp() must return a non-empty floating tensor, got (4,)"),
        (lambda: logp()[:0], "logp() must return a non-empty floating tensor, got (0,)"),
        (lambda: logp() * math.nan, "logp() returned a NaN or inf log-probability"),
        (lambda: logp().detach(), "logp() returned a tensor without an autograd graph to θ"),
    ]
    for fn, msg in cases:
        with pytest.raises(InputError) as exc:
            ENG.lambda_max_autodiff(net, fn, NAMES)
        assert str(exc.value) == msg


class _DropoutRoot(torch.nn.Dropout):
    def __init__(self, p):
        super().__init__(p)
        self.lin = torch.nn.Linear(3, 2).double()


class _BatchNormRoot(torch.nn.BatchNorm1d):
    def __init__(self):
        super().__init__(2)
        self.lin = torch.nn.Linear(3, 2).double()


def test_autodiff_stochastic_layers_in_training_mode():
    x = torch.randn(4, 3, dtype=F64, generator=_gen(3))
    seq = torch.nn.Sequential(torch.nn.Linear(3, 2).double(), torch.nn.Dropout(0.5))
    seq.eval()
    seq[1].train()  # the root in eval mode does not hide a training child
    cases = [
        (seq, ("0.weight",), "1 is a Dropout in training mode: call model.eval() first"),
        (_DropoutRoot(0.5), ("lin.weight",), "model is a _DropoutRoot in training mode: call model.eval() first"),
        (
            _BatchNormRoot(),
            ("lin.weight",),
            "model is a _BatchNormRoot in training mode (samples interact): call model.eval()",
        ),
        (
            torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).double(),
            ("0.weight",),
            "1 is a BatchNorm1d in training mode (samples interact): call model.eval()",
        ),
    ]
    for model, names, msg in cases:
        with pytest.raises(InputError) as exc:
            ENG.lambda_max_autodiff(model, lambda m=model: m(x)[:, 0], names)
        assert str(exc.value) == msg
    # Dropout(p=0) in training mode is the identity: accepted, same λ as in eval mode
    zero = torch.nn.Sequential(torch.nn.Linear(3, 2).double(), torch.nn.Dropout(0.0)).train()
    a = ENG.lambda_max_autodiff(zero, lambda: zero(x)[:, 0], ("0.weight",), tol=1e-12)
    zero.eval()
    b = ENG.lambda_max_autodiff(zero, lambda: zero(x)[:, 0], ("0.weight",), tol=1e-12)
    assert a.value == b.value > 0


def test_cotangent_pruner_drops_exactly_the_tensors_that_depend_on_the_cotangent():
    """Every tensor the recorded backward saves is dropped iff u is reachable from it in the
    autograd graph (checked here by differentiating it w.r.t. u); the counts and bytes match."""
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 3)
    ).double()
    x = torch.randn(6, 3, dtype=F64, generator=_gen(5))
    y = torch.arange(6) % 3
    thetas = list(net.parameters())
    flat = torch.log_softmax(net(x), -1).gather(-1, y[:, None]).squeeze(-1)
    u = torch.zeros(6, dtype=F64, requires_grad=True)
    pruner = ENG._CotangentPruner(u)
    packed = []

    def pack(t):
        out = pruner.pack(t)
        packed.append((t, out is not t))
        return out

    with torch.autograd.graph.saved_tensors_hooks(pack, pruner.unpack):
        torch.autograd.grad(flat, thetas, grad_outputs=u, create_graph=True)
    dropped_ref, nbytes = 0, 0
    for t, dropped in packed:
        depends = t is u or (
            t.requires_grad and torch.autograd.grad(t.sum(), u, retain_graph=True, allow_unused=True)[0] is not None
        )
        assert dropped == depends, (tuple(t.shape), t.grad_fn)
        if depends:
            dropped_ref += 1
            nbytes += t.numel() * t.element_size()
    assert 0 < dropped_ref < len(packed)
    assert (pruner.dropped, pruner.dropped_bytes) == (dropped_ref, nbytes)


def test_cotangent_pruner_placeholder_unpacks_to_nan_of_the_shape_and_dtype():
    u = torch.zeros(3, dtype=F64, requires_grad=True)
    pruner = ENG._CotangentPruner(u)
    t = (u * 2.0).reshape(3, 1).expand(3, 4)
    box = pruner.pack(t)
    out = pruner.unpack(box)
    assert out.shape == (3, 4) and out.dtype == F64 and out.device == t.device
    assert bool(torch.isnan(out).all())
    assert (pruner.dropped, pruner.dropped_bytes) == (1, 12 * 8)
    for kept in (torch.tensor(1.0), torch.ones(2, 2), (1, 2)):
        assert pruner.unpack(kept) is kept
    assert isinstance(pruner.pack(u), tuple)  # the cotangent itself is never kept


# --------------------------------------------------------------------------------------
# lambda_max_structured / lambda_max_per_token
# --------------------------------------------------------------------------------------


def _classifier_reference(n, dtype=F64):
    net, logp, logp_of = _classifier(n=n, dtype=dtype)
    params = _params(net, NAMES)
    G = _loop_G(logp_of, params, n)
    return net, logp, G, _gram_ref(G)


def test_structured_lambda_max_dense_and_lanczos_records():
    n = 40
    net, logp, G, K = _classifier_reference(n)
    ref = _np_top(K)
    P = G.shape[1]
    r = ENG.lambda_max_structured(net, logp, NAMES)
    assert r.value == pytest.approx(ref, rel=1e-12, abs=0)
    assert (r.method, r.iterations, r.n, r.P, r.operator, r.vector) == ("structured-gram", 0, n, P, "K", None)
    assert r.residual == pytest.approx(
        n * EPS * np.linalg.norm(K, "fro"), rel=1e-10, abs=0
    )  # eigvalsh's a-priori bound
    assert len(r.structure) == 4 and r.structure[0].startswith("fc.weight: 1 call(s) ")
    eq = ENG.lambda_max_structured(net, logp, NAMES, dense_max=n)  # n ≤ dense_max: still eigvalsh
    assert eq.method == "structured-gram"
    lz = ENG.lambda_max_structured(net, logp, NAMES, dense_max=n - 1, tol=1e-12)
    assert (lz.method, lz.n, lz.P, lz.operator, lz.vector, lz.structure) == (
        "structured-gram-lanczos",
        n,
        P,
        "K",
        None,
        r.structure,
    )
    assert lz.value == pytest.approx(ref, rel=1e-10, abs=0) and lz.residual <= 1e-10 * ref and lz.iterations >= 1
    direct = ENG.lanczos(lambda v: torch.as_tensor(K) @ v, n, tol=1e-12)
    assert lz.iterations == pytest.approx(direct.iterations, abs=2)
    loose = ENG.lambda_max_structured(net, logp, NAMES, dense_max=n - 1, tol=1e-2)
    assert loose.iterations < lz.iterations


def test_structured_lambda_max_default_dense_max_is_512():
    for n, method in ((512, "structured-gram"), (513, "structured-gram-lanczos")):
        net, logp, _ = _classifier(n=n)
        assert ENG.lambda_max_structured(net, logp, NAMES).method == method


def test_structured_lambda_max_float32_lanczos_and_options_reach_the_gram():
    net, logp, G, K = _classifier_reference(12, dtype=torch.float32)
    ref = _np_top(K)
    r = ENG.lambda_max_structured(net, logp, NAMES, dense_max=4)
    assert r.method == "structured-gram-lanczos" and r.value == pytest.approx(ref, rel=1e-5, abs=0)
    # the keyword options reach structured_gram: score rows that disagree are refused
    with pytest.raises(HypothesesNotMet, match="disagrees with the score rows"):
        ENG.lambda_max_structured(net, logp, NAMES, score_rows=lambda idx: 2 * G[idx])


class _TokenLM(torch.nn.Module):
    """Causal and position-wise: logits at t depend on token t only."""

    def __init__(self, vocab=7, d=3):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x)))


def _token_lm(m, T, seed=0):
    lm, _, x, y = _causal_lm(_TokenLM, seed, m, T, 7)

    logp, logp_of = _next_token_logps(lm, x, y)

    return lm, logp, logp_of


def test_per_token_lambda_max_defaults_records_and_errors():
    m, T = 3, 4
    lm, logp, logp_of = _token_lm(m, T)
    names = ("emb.weight", "head.weight", "head.bias")
    params = _params(lm, names)
    G = _loop_G(logp_of, params, m * T)
    ref = _ref_lam(G)
    K = _gram_ref(G)
    r = ENG.lambda_max_per_token(lm, logp, names)  # default: auto → gram (n ≤ 512)
    assert r.value == pytest.approx(ref, rel=1e-12, abs=0)
    assert (r.method, r.iterations, r.n, r.P, r.operator, r.vector) == ("per-token-gram", 0, 12, G.shape[1], "K", None)
    assert r.residual == pytest.approx(12 * EPS * np.linalg.norm(K, "fro"), rel=1e-10, abs=0)
    lz = ENG.lambda_max_per_token(lm, logp, names, method="lanczos", tol=1e-12)
    assert lz.value == pytest.approx(ref, rel=1e-10, abs=0) and lz.method == "per-token-lanczos"
    d = ENG.lambda_max_per_token(lm, logp, names, method="lanczos")
    e = ENG.lambda_max_per_token(lm, logp, names, method="lanczos", tol=1e-10, seed=0)
    assert (d.value, d.iterations, d.residual) == (e.value, e.iterations, e.residual)
    o = ENG.lambda_max_per_token(lm, logp, names, method="lanczos", tol=1e-10, seed=1)
    assert (o.value, o.iterations, o.residual) != (e.value, e.iterations, e.residual)
    gl = ENG.lambda_max_per_token(lm, logp, names, method="gram", dense_max=11, tol=1e-12)
    assert gl.method == "per-token-gram-lanczos" and gl.value == pytest.approx(ref, rel=1e-10, abs=0)
    with pytest.raises(InputError) as exc:
        ENG.lambda_max_per_token(lm, logp, names, method="dense")
    assert str(exc.value) == "unknown method 'dense'; expected auto, gram or lanczos"


def test_per_token_lambda_max_default_dense_max_is_512():
    lm, logp, _ = _token_lm(27, 19)  # n = 513
    r = ENG.lambda_max_per_token(lm, logp, ("head.weight",))
    assert (r.n, r.method) == (513, "per-token-lanczos")


# --------------------------------------------------------------------------------------
# structured Gram: what it refuses (exact reasons) and the layer kinds it accepts
# --------------------------------------------------------------------------------------

_SUPPORTED = "nn.Linear, nn.Conv1d/nn.Conv2d (groups=1, zero padding), nn.Embedding, transformers Conv1D"


class _Wrap(torch.nn.Module):
    """One layer, its input, and the per-sample log-probability of class 0 of a flattened
    readout: the structured Gram of the layer's tensors and the loop reference."""

    def __init__(self, layer, x):
        super().__init__()
        self.layer = layer.double()
        self.x = x

    def forward(self, x):
        return self.layer(x)

    def logp(self):
        out = self(self.x).reshape(self.x.shape[0], -1)
        return torch.log_softmax(out, -1)[:, 0]

    def logp_of(self, i):
        out = self(self.x[i : i + 1]).reshape(1, -1)
        return torch.log_softmax(out, -1)[0, 0]


def _wrap(layer, shape, seed=0, integer=None):
    torch.manual_seed(seed)
    if integer is not None:
        x = torch.randint(0, integer, shape, generator=_gen(seed))
    else:
        x = torch.randn(shape, generator=_gen(seed), dtype=F64)
    return _Wrap(layer, x)


def _refusal(model, names):
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(model, model.logp, names)
    return str(exc.value)


class _OverridingLinear(torch.nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2.0


class Conv1D(torch.nn.Module):
    """Named like transformers' Conv1D but not from transformers: not supported."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 2, dtype=F64))

    def forward(self, x):
        return x @ self.weight


def test_structured_gram_refuses_unsupported_layers_with_the_reason():
    def msg(name, holder, role, why):
        return f"structured Gram cannot score {name!r} (held by {holder} as {role!r}): {why}"

    ln = _wrap(torch.nn.LayerNorm(3), (4, 3))
    assert _refusal(ln, ["layer.weight"]) == msg(
        "layer.weight",
        "layer",
        "weight",
        f"it is owned by a LayerNorm, not one of {_SUPPORTED} (or by a subclass that overrides forward)",
    )
    ov = _wrap(_OverridingLinear(3, 2), (4, 3))
    assert "it is owned by a _OverridingLinear, not one of" in _refusal(ov, ["layer.weight"])
    fake = _wrap(Conv1D(), (4, 3))
    assert "it is owned by a Conv1D, not one of" in _refusal(fake, ["layer.weight"])
    extra = _wrap(torch.nn.Linear(3, 2), (4, 3))
    extra.layer.scale = torch.nn.Parameter(torch.ones(2, dtype=F64))
    assert _refusal(extra, ["layer.scale"]) == msg(
        "layer.scale", "layer", "scale", "'scale' is not the weight or bias of the Linear"
    )
    par = _wrap(torch.nn.Linear(3, 2), (4, 3))
    torch.nn.utils.parametrize.register_parametrization(par.layer, "weight", _Identity())
    assert _refusal(par, ["layer.bias"]) == msg(
        "layer.bias", "layer", "bias", "the module is parametrized (torch.nn.utils.parametrize)"
    )
    grouped = _wrap(torch.nn.Conv1d(2, 2, 3, groups=2), (4, 2, 6))
    assert _refusal(grouped, ["layer.weight"]) == msg(
        "layer.weight", "layer", "weight", "grouped convolution (groups=2) is not supported"
    )
    refl = _wrap(torch.nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"), (4, 2, 6))
    assert _refusal(refl, ["layer.weight"]) == msg(
        "layer.weight", "layer", "weight", "padding_mode='reflect' is not supported (only 'zeros')"
    )
    for conv in (torch.nn.Conv1d(2, 2, 4, padding="same"), torch.nn.Conv2d(1, 2, (3, 4), padding="same")):
        shape = (4, 2, 7) if isinstance(conv, torch.nn.Conv1d) else (4, 1, 5, 6)
        assert _refusal(_wrap(conv, shape), ["layer.weight"]) == msg(
            "layer.weight", "layer", "weight", "padding='same' with an even effective kernel pads asymmetrically"
        )
    emb = _wrap(torch.nn.Embedding(5, 3, max_norm=1.0), (4,), integer=5)
    assert _refusal(emb, ["layer.weight"]) == msg(
        "layer.weight", "layer", "weight", "Embedding(max_norm=...) renormalises its weight in the forward"
    )
    freq = _wrap(torch.nn.Embedding(5, 3, scale_grad_by_freq=True), (4,), integer=5)
    assert _refusal(freq, ["layer.weight"]) == msg(
        "layer.weight", "layer", "weight", "Embedding(scale_grad_by_freq=True) scales gradients by batch frequencies"
    )


class _Identity(torch.nn.Module):
    def forward(self, w):
        return w


@pytest.mark.parametrize(
    ("layer", "shape", "integer"),
    [
        (lambda: torch.nn.Conv1d(2, 3, 3, padding="same"), (5, 2, 7), None),
        (lambda: torch.nn.Conv1d(2, 3, 2, dilation=2, padding="same"), (5, 2, 7), None),  # d·(k−1) = 2: symmetric
        (lambda: torch.nn.Conv1d(2, 3, 4, padding="valid"), (5, 2, 7), None),
        (lambda: torch.nn.Conv1d(2, 3, 3, stride=2, padding=1), (5, 2, 8), None),
        (lambda: torch.nn.Conv2d(1, 2, 3, padding="same"), (5, 1, 4, 5), None),
        (lambda: torch.nn.Conv2d(1, 2, (2, 3), stride=(1, 2), padding=(1, 0)), (5, 1, 4, 5), None),
        (lambda: torch.nn.Linear(3, 4), (5, 3), None),
        (lambda: torch.nn.Linear(3, 4), (5, 2, 3), None),  # 2 rows per sample
        (lambda: torch.nn.Embedding(6, 3), (5, 2), 6),
        (lambda: torch.nn.Embedding(6, 3, padding_idx=1), (5, 2), 6),
    ],
)
def test_structured_gram_of_accepted_layers_equals_the_loop(layer, shape, integer):
    model = _wrap(layer(), shape, seed=3, integer=integer)
    if integer is not None:
        model.x[0, 0] = 1  # a padding token where there is one
    names = [k for k, _ in model.named_parameters()]
    params = _params(model, names)
    n = shape[0]
    G = _loop_G(model.logp_of, params, n)
    K_ref = _gram_ref(G)
    sg = ENG.structured_gram_details(model, model.logp, names, check_rows=n, score_rows=lambda idx: G[idx])
    assert np.abs(sg.K.numpy() - K_ref).max() <= 256 * EPS * n * np.abs(K_ref).max()
    assert torch.equal(sg.K, sg.K.T)
    assert sg.P == G.shape[1]
    assert sg.checks == (
        f"H2 verified with autograd on {n} sampled samples and one random combination of all {n}; "
        f"H1 on the autograd graph; K[idx, idx] equals score_rows on {n} rows"
    )


def test_per_token_argument_errors_name_the_value():
    lm, logp, _ = _token_lm(2, 3)
    names = ("head.weight",)
    for kw, msg in (
        ({"check_rows": True}, "check_rows must be a non-negative integer, got True"),
        ({"check_rows": -1}, "check_rows must be a non-negative integer, got -1"),
        ({"check_rows": 1.5}, "check_rows must be a non-negative integer, got 1.5"),
        ({"target_chunk": 0}, "target_chunk must be a positive integer, got 0"),
        ({"target_chunk": True}, "target_chunk must be a positive integer, got True"),
        ({"target_chunk": 2.5}, "target_chunk must be a positive integer, got 2.5"),
    ):
        with pytest.raises(InputError) as exc:
            ENG.structured_gram_per_token(lm, logp, names, **kw)
        assert str(exc.value) == msg
    base = ENG.structured_gram_per_token(lm, logp, names).K
    for kw in ({"check_rows": 0}, {"target_chunk": 1}, {"target_chunk": 2}):
        sg = ENG.structured_gram_per_token(lm, logp, names, **kw)
        assert float((sg.K - base).abs().max()) <= 64 * EPS * float(base.abs().max())
    assert ENG.structured_gram_per_token(lm, logp, names, check_rows=0).checks == "none (check_rows=0)"
    for fn, msg in (
        (lambda: logp().reshape(-1), "per_token_logp() must return a non-empty floating (m, T) tensor, got (6,)"),
        (lambda: [0.0], "per_token_logp() must return a non-empty floating (m, T) tensor, got list"),
        (lambda: logp()[:, :0], "per_token_logp() must return a non-empty floating (m, T) tensor, got (2, 0)"),
        (lambda: logp().long(), "per_token_logp() must return a non-empty floating (m, T) tensor, got (2, 3)"),
        (lambda: logp() / 0.0, "per_token_logp() returned a NaN or inf log-probability"),
    ):
        with pytest.raises(InputError) as exc:
            ENG.lambda_max_per_token(lm, fn, names)
        assert str(exc.value) == msg


def test_structured_gram_sample_assignment_is_refused_with_the_shape():
    """A Linear applied to a (T, n, d) input (time-first) has T·n rows that cannot be assigned to
    the n samples; a single sample given as a 1-D input is one row."""

    class TimeFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2).double()

        def forward(self, x):  # x (n, 4, 3) → (4, n, 2) → per-sample mean over time
            return self.lin(x.transpose(0, 1)).mean(0)

    model = TimeFirst()
    x = torch.randn(5, 4, 3, dtype=F64, generator=_gen(1))
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(model, lambda: torch.log_softmax(model(x), -1)[:, 0], ["lin.weight"])
    assert str(exc.value) == (
        "lin (call #0): its 20 output rows (leading shape (4, 5)) cannot be assigned to the n = 5 samples "
        "(neither one row per sample nor a batch-first axis of length n)"
    )
    lin = torch.nn.Linear(3, 2).double()
    v = torch.randn(3, dtype=F64, generator=_gen(2))
    K = ENG.structured_gram(lin, lambda: torch.log_softmax(lin(v), -1)[:1], ["weight", "bias"])
    g = torch.autograd.grad(torch.log_softmax(lin(v), -1)[0], [lin.weight, lin.bias])
    ref = float(sum((t * t).sum() for t in g))
    assert K.shape == (1, 1) and float(K[0, 0]) == pytest.approx(ref, rel=1e-13, abs=0)


class _TwoNames(torch.nn.Module):
    """One Linear registered under two names (``a`` and its alias ``b``), called once through
    ``a``; with ``direct`` its weight is also read directly by F.linear."""

    def __init__(self, direct=False):
        super().__init__()
        self.a = torch.nn.Linear(3, 3).double()
        self.b = self.a
        self.c = torch.nn.Linear(3, 2).double()
        self.direct = direct

    def forward(self, x):
        h = torch.tanh(self.a(x))
        if self.direct:
            h = h + torch.nn.functional.linear(x, self.a.weight)
        return self.c(h)


def test_parameter_names_resolution_errors_name_the_problem():
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=F64, generator=_gen(0))
    model = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(5)]).double()

    def logp():
        return torch.log_softmax(model(x), -1)[:, 0]

    every = [k for k, _ in model.named_parameters()]
    for names, msg in (
        ("0.weight", "param_names must be a sequence of names, not a string"),
        ([], "the parameter subset is empty"),
    ):
        with pytest.raises(InputError) as exc:
            ENG.structured_gram(model, logp, names)
        assert str(exc.value) == msg
    from fimtheory.errors import UnknownIdError

    with pytest.raises(UnknownIdError) as exc:
        ENG.lambda_max_autodiff(model, logp, ["0.weight", "nope"])
    assert str(exc.value) == f"unknown parameter(s) ['nope']; the model has {every[:8]}..."
    tied = _TwoNames()
    with pytest.raises(InputError) as exc:
        ENG.structured_gram(tied, lambda: torch.log_softmax(tied(x), -1)[:, 0], ["a.weight", "b.weight"])
    assert str(exc.value) == "'b.weight' and 'a.weight' are the same tensor (tied); list it once"
    # an alias name alone is a name of the tensor: accepted, same K as under its first name
    K_b = ENG.structured_gram(tied, lambda: torch.log_softmax(tied(x), -1)[:, 0], ["b.weight"])
    K_a = ENG.structured_gram(tied, lambda: torch.log_softmax(tied(x), -1)[:, 0], ["a.weight"])
    assert torch.equal(K_a, K_b)
    shared = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)).double()
    shared[1].weight = torch.nn.Parameter(shared[0].weight.detach())  # same storage, distinct parameter
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(shared, lambda: torch.log_softmax(shared(x), -1)[:, 0], ["0.weight"])
    assert str(exc.value) == (
        "'0.weight' shares storage with the distinct parameter '1.weight': autograd treats them as separate "
        "tensors, so the scores of one do not include the uses of the other; tie them (assign the same "
        "nn.Parameter) or untie"
    )


def test_direct_use_of_a_theta_tensor_is_refused_with_the_counts():
    torch.manual_seed(1)
    x = torch.randn(4, 3, dtype=F64, generator=_gen(1))
    model = _TwoNames(direct=True)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(model, lambda: torch.log_softmax(model(x), -1)[:, 0], ["b.weight", "c.weight"])
    assert str(exc.value) == (
        "'b.weight' is used 2 time(s) in the graph of log p but only 1 use(s) are calls of a supported "
        "module: it is also used directly (e.g. F.linear(x, weight) or a weight read by another module), "
        "which the structured Gram cannot see"
    )


class _CalledTwice(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3).double()
        self.out = torch.nn.Linear(3, 2).double()

    def forward(self, x):
        return self.out(torch.tanh(self.lin(torch.tanh(self.lin(x)))))


def test_a_module_called_twice_is_two_recorded_uses():
    torch.manual_seed(2)
    model = _CalledTwice()
    x = torch.randn(5, 3, dtype=F64, generator=_gen(2))
    names = ["lin.weight", "lin.bias", "out.weight"]
    params = _params(model, names)

    def logp_of(i):
        return torch.log_softmax(model(x[i : i + 1]), -1)[0, 0]

    G = _loop_G(logp_of, params, 5)
    sg = ENG.structured_gram_details(model, lambda: torch.log_softmax(model(x), -1)[:, 0], names)
    K_ref = _gram_ref(G)
    assert np.abs(sg.K.numpy() - K_ref).max() <= 256 * EPS * 5 * np.abs(K_ref).max()
    assert sg.structure[0] == "lin.weight: 2 call(s) lin#0(linear) + lin#1(linear)"
    assert sg.structure[2] == "out.weight: 1 call(s) out#2(linear)"


class _PrefixLM(torch.nn.Module):
    """Causal with mixing: the logits at t read the mean of the embeddings at positions ≤ t (the
    embedding's use is not position-wise), then a position-wise head."""

    def __init__(self, vocab=7, d=3):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, x):
        h = self.emb(x)
        T = h.shape[1]
        prefix = torch.cumsum(h, dim=1) / torch.arange(1, T + 1, dtype=h.dtype)[:, None]
        return self.head(torch.tanh(prefix))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_per_token_lanczos_paths_record_what_was_computed(dtype):
    m, T = 3, 4
    lm, _, x, y = _causal_lm(_PrefixLM, 5, m, T, 7, dtype)

    logp, logp_of = _next_token_logps(lm, x, y)

    names = ("emb.weight", "head.weight", "head.bias")
    params = _params(lm, names)
    ref = _ref_lam(_loop_G(logp_of, params, m * T))
    P = 7 * 3 + 3 * 7 + 7
    rel = 1e-10 if dtype == F64 else 1e-4
    tol = 1e-12 if dtype == F64 else 1e-6
    lz = ENG.lambda_max_per_token(lm, logp, names, method="lanczos", tol=tol, seed=3)
    assert (lz.method, lz.n, lz.P, lz.operator, lz.vector) == ("per-token-lanczos", 12, P, "K", None)
    assert lz.structure == (
        "emb.weight: 1 call(s); per-target signals",
        "head.weight: 1 call(s); diagonal",
        "head.bias: 1 call(s); diagonal",
    )
    assert lz.value == pytest.approx(ref, rel=rel, abs=0) and 1 <= lz.iterations <= 12
    assert lz.residual <= (1e-9 if dtype == F64 else 1e-5) * ref
    sg = ENG.structured_gram_per_token(lm, logp, names)
    K = sg.K
    gl = ENG.lambda_max_per_token(lm, logp, names, method="gram", dense_max=11, tol=tol, seed=3)
    direct = ENG.lanczos(lambda v: K @ v, 12, dtype=dtype, tol=tol, seed=3)
    assert (gl.value, gl.iterations, gl.residual) == (direct.value, direct.iterations, direct.residual)
    assert (gl.method, gl.n, gl.P, gl.operator, gl.vector, gl.structure) == (
        "per-token-gram-lanczos",
        12,
        P,
        "K",
        None,
        sg.structure,
    )
    with pytest.raises(InputError, match="target_chunk must be a positive integer, got 0"):
        ENG.lambda_max_per_token(lm, logp, names, target_chunk=0)


class _Zoo(torch.nn.Module):
    """A bias-free Linear, a LayerNorm, a Conv1d, an Embedding tied to a head, a Linear."""

    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm(3)
        self.a = torch.nn.Linear(3, 3, bias=False)
        self.conv = torch.nn.Conv1d(1, 1, 2)
        self.emb = torch.nn.Embedding(4, 3)
        self.head = torch.nn.Linear(3, 4)
        self.head.weight = self.emb.weight


def test_layer_param_names_lists_every_supported_tensor_once():
    z = _Zoo()
    assert ENG.layer_param_names(z) == ("a.weight", "emb.weight", "head.bias")
    assert ENG.layer_param_names(z, kinds=("conv1d", "linear")) == (
        "a.weight",
        "conv.weight",
        "conv.bias",
        "head.weight",
        "head.bias",
    )
    assert ENG.layer_param_names(torch.nn.Linear(2, 2)) == ("weight", "bias")  # the root module: no prefix


def _off_by(a):
    """A Function whose backward has the value (1 + a)·g but the derivative 1 in g: for one
    sample and one parameter every product is exact in float64 (dyadic a), so the transpose
    check sees the relative gap a / (2 + 3a) exactly (|⟨GGᵀv, v⟩ − ‖Gᵀv‖²| = a, scale 2 + 3a)."""

    class OffBy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            return z.clone()

        @staticmethod
        def backward(ctx, g):
            return a * g.detach() + g

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1, dtype=F64))

    model = One()
    return ENG.lambda_max_autodiff(model, lambda: OffBy.apply(model.w), ("w",))


def test_autodiff_transpose_tolerance_is_4096_eps_relative():
    """Gap a = 8193·2⁻⁵² (just above 4096·eps·scale = 2⁻³⁹·(1 + 1.5a)): refused; a = 8191·2⁻⁵²
    (just below): accepted, λ = 1 + a."""
    with pytest.raises(HypothesesNotMet, match="is not the transpose of the backward"):
        _off_by(8193 * 2.0**-52)
    r = _off_by(8191 * 2.0**-52)
    assert r.value == 1.0 + 8191 * 2.0**-52


def test_autodiff_float32_and_tolerance_reach_lanczos():
    net, logp, logp_of = _classifier(dtype=torch.float32)
    params = _params(net, NAMES)
    ref = _ref_lam(_loop_G(logp_of, params, 6))
    r = ENG.lambda_max_autodiff(net, logp, NAMES, tol=1e-6)
    assert r.value == pytest.approx(ref, rel=1e-5, abs=0)
    net64, logp64, _ = _classifier()
    tight = ENG.lambda_max_autodiff(net64, logp64, NAMES, tol=1e-13)
    loose = ENG.lambda_max_autodiff(net64, logp64, NAMES, tol=1e-2)
    assert loose.iterations < tight.iterations


def test_lanczos_options_must_be_valid_numbers():
    """max_iter 0, negative or fractional, and a NaN, infinite or negative tol are bad input: a
    clear InputError (before: max_iter=0 silently meant 500, -1 and 2.5 failed inside torch.zeros,
    tol=NaN silently disabled the residual test)."""
    d = torch.arange(1.0, 6.0, dtype=F64)
    for kw, msg in (
        ({"max_iter": 0}, "max_iter must be a positive integer or None, got 0"),
        ({"max_iter": -1}, "max_iter must be a positive integer or None, got -1"),
        ({"max_iter": 2.5}, "max_iter must be a positive integer or None, got 2.5"),
        ({"max_iter": True}, "max_iter must be a positive integer or None, got True"),
        ({"tol": math.nan}, "tol must be a finite number >= 0, got nan"),
        ({"tol": math.inf}, "tol must be a finite number >= 0, got inf"),
        ({"tol": -1e-3}, "tol must be a finite number >= 0, got -0.001"),
    ):
        with pytest.raises(InputError) as exc:
            ENG.lanczos(lambda v: d * v, 5, **kw)
        assert str(exc.value) == msg
        with pytest.raises(InputError):
            ENG.lambda_max(torch.ones(3, 4, dtype=F64), method="lanczos", **kw)
    assert ENG.lanczos(lambda v: d * v, 5, max_iter=1, tol=0.0).iterations == 1


def test_gram_matrix_passes_its_block_size(monkeypatch):
    """The row-block size reaches _gram (default 2048): blocking changes K's rounding (not its
    accuracy), so the option is observed where it is used."""
    seen = []
    real = ENG._gram

    def spy(G, block_size=2048):
        seen.append(block_size)
        return real(G, block_size)

    monkeypatch.setattr(ENG, "_gram", spy)
    G = torch.randn(6, 4, generator=_gen(9), dtype=F64)
    ENG.gram_matrix(G)
    ENG.gram_matrix(G, block_size=5)
    assert seen == [2048, 5]


# --------------------------------------------------------------------------------------
# Gram builders against the autograd loop: every layer kind, row layout and route at once
# (small float64 models; K compared entrywise with 256·eps·n·‖K‖_max)
# --------------------------------------------------------------------------------------


def _hf_conv1d(nf, nx):
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    return pytorch_utils.Conv1D(nf, nx)


def _close(K, K_ref, n):
    K = K.detach().numpy() if isinstance(K, torch.Tensor) else K
    return float(np.abs(K - K_ref).max()) <= 256 * EPS * n * float(np.abs(K_ref).max())


class _GramZoo(torch.nn.Module):
    """Per-sample scores through every supported layer: a Linear called on one row and on two
    rows per sample, a strided padded Conv1d, a padded Conv2d, an Embedding with padding_idx tied
    to a later Linear head, a Linear tied to a later Embedding, a transformers Conv1D, and one
    Linear that is never called."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)
        self.conv1 = torch.nn.Conv1d(2, 2, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(1, 2, (2, 3), padding=(1, 0))
        self.emb = torch.nn.Embedding(5, 3, padding_idx=1)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight
        self.pre = torch.nn.Linear(3, 5, bias=False)
        self.emb2 = torch.nn.Embedding(5, 3)
        self.emb2.weight = self.pre.weight
        self.hf = _hf_conv1d(3, 2)
        self.spare = torch.nn.Linear(2, 2)
        self.register_buffer("read", torch.randn(5 + 4 + 4 + 8 + 30 + 5 + 3 + 3, 4, generator=_gen(11), dtype=F64))

    def forward(self, x, seq, sig, img, tok):
        f = [
            self.pre(x),
            self.lin(x),
            self.lin(seq).sum(1),
            self.conv1(sig).flatten(1),
            self.conv2(img).flatten(1),
            self.head(torch.tanh(self.emb(tok))).sum(1),
            self.emb2(tok).sum(1),
            self.hf(x[:, :2]),
        ]
        return torch.tanh(torch.cat(f, -1)) @ self.read


def _gram_zoo(n=5):
    torch.manual_seed(4)
    model = _GramZoo().double().eval()
    g = _gen(6)
    inputs = (
        torch.randn(n, 3, generator=g, dtype=F64),
        torch.randn(n, 2, 3, generator=g, dtype=F64),
        torch.randn(n, 2, 7, generator=g, dtype=F64),
        torch.randn(n, 1, 4, 5, generator=g, dtype=F64),
        torch.randint(0, 5, (n, 2), generator=g),
    )
    inputs[4][0, 0] = 1  # the padding token
    inputs[4][2, 1] = 1
    y = torch.arange(n) % 4

    def logp():
        return torch.log_softmax(model(*inputs), -1).gather(-1, y[:, None]).squeeze(-1)

    def logp_of(i):
        return torch.log_softmax(model(*(t[i : i + 1] for t in inputs)), -1)[0, y[i]]

    names = [k for k, _ in model.named_parameters()]
    params = _params(model, names)
    G = _loop_G(logp_of, params, n)
    return model, logp, names, G


_ZOO_STRUCTURE = (
    "lin.weight: 2 call(s) lin#1(linear) + lin#2(linear, 2 rows/sample)",
    "lin.bias: 2 call(s) lin#1(linear) + lin#2(linear, 2 rows/sample)",
    "conv1.weight: 1 call(s) conv1#3(conv1d, 4 rows/sample)",
    "conv1.bias: 1 call(s) conv1#3(conv1d, 4 rows/sample)",
    "conv2.weight: 1 call(s) conv2#4(conv2d, 15 rows/sample)",
    "conv2.bias: 1 call(s) conv2#4(conv2d, 15 rows/sample)",
    "emb.weight: 2 call(s) emb#5(embedding, 2 rows/sample) + head#6(linear, 2 rows/sample)",
    "pre.weight: 2 call(s) pre#0(linear) + emb2#7(embedding, 2 rows/sample)",
    "hf.weight: 1 call(s) hf#8(hf_conv1d)",
    "hf.bias: 1 call(s) hf#8(hf_conv1d)",
    "spare.weight: 0 call(s) ",
    "spare.bias: 0 call(s) ",
)


@pytest.mark.parametrize("route", ["default", "chunked", "chunked-structured"])
def test_gram_builder_per_sample_zoo_equals_the_loop(route, monkeypatch):
    """K of the per-sample structured Gram equals G Gᵀ/n of the loop's scores, on every layer kind,
    with the default routes (explicit for the convolutions and the 1 + 2 rows Linear), with row
    blocks of 7 entries, and with the explicit route refused (every tensor by row blocks)."""
    n = 5
    model, logp, names, G = _gram_zoo(n)
    K_ref = _gram_ref(G)
    if route != "default":
        monkeypatch.setattr(ENG, "_BLOCK_ENTRIES", 7)
    if route == "chunked-structured":
        monkeypatch.setattr(ENG, "_use_explicit", lambda blocks, n: False)
    sg = ENG.structured_gram_details(model, logp, names, check_rows=n, score_rows=lambda idx: G[idx])
    assert _close(sg.K, K_ref, n)
    assert torch.equal(sg.K, sg.K.T) and sg.K.dtype == F64 and sg.K.shape == (n, n)
    assert sg.P == G.shape[1] == 12 + 4 + 12 + 2 + 12 + 2 + 15 + 15 + 6 + 3 + 4 + 2
    assert sg.structure == _ZOO_STRUCTURE
    assert sg.checks == (
        f"H2 verified with autograd on {n} sampled samples and one random combination of all {n}; "
        f"H1 on the autograd graph; K[idx, idx] equals score_rows on {n} rows"
    )
    assert all(p.requires_grad for p in model.parameters())
    if route == "default":
        K1 = ENG.structured_gram(model, logp, names)
        assert torch.equal(K1, sg.K)
        assert ENG.structured_gram_details(model, logp, names, check_rows=0).checks == "none (check_rows=0)"
        # the route decision itself, against the documented flop counts
        assert not ENG._use_explicit([(None, torch.zeros(n, 4), torch.zeros(n, 3))], n)  # one row per sample
        blocks = [(torch.arange(n).repeat_interleave(4), torch.zeros(4 * n, 2), torch.zeros(4 * n, 6))]
        assert ENG._use_explicit(blocks, n)  # 16n²·8/2 > 4n·12 + 12n²
        wide = [(torch.arange(n).repeat_interleave(2), torch.zeros(2 * n, 40), torch.zeros(2 * n, 40))]
        assert not ENG._use_explicit(wide, n)  # 4n²·80/2 = 160n² < 2n·1600 + 1600n²
        idx = [(None, ENG._Index(torch.zeros(2 * n, dtype=torch.long), 5), torch.zeros(2 * n, 3))]
        assert not ENG._use_explicit(idx, n)


def test_gram_builder_parts_against_dense_formulas():
    """The factor helpers on their own: Gram of factor blocks (dense, one-hot, bias), widths,
    rows, the chunked accumulation over segments, the explicit per-sample gradients."""
    g = _gen(8)
    X = torch.randn(6, 3, generator=g, dtype=F64)
    Y = torch.randn(4, 3, generator=g, dtype=F64)
    i_x = ENG._Index(torch.tensor([0, 2, 2, 1, 0, 3]), 4)
    i_y = ENG._Index(torch.tensor([2, 0, 3, 3]), 4)
    OX, OY = torch.eye(4, dtype=F64)[i_x.idx], torch.eye(4, dtype=F64)[i_y.idx]
    assert ENG._fgram(None, Y, 0, 6) is None
    assert torch.equal(ENG._fgram(X, Y, 1, 5), X[1:5] @ Y.T)
    assert torch.equal(ENG._fgram(i_x, i_y, 1, 5).to(F64), OX[1:5] @ OY.T)
    Z = torch.randn(4, 4, generator=g, dtype=F64)  # rows of a dense factor of width 4 (= the index size)
    assert torch.allclose(ENG._fgram(i_x, Z, 1, 5), OX[1:5] @ Z.T, rtol=0, atol=0)
    assert torch.allclose(ENG._fgram(Z, i_y, 1, 3), Z[1:3] @ OY.T, rtol=0, atol=0)
    assert (ENG._rows_of(X), ENG._rows_of(i_x), ENG._width(X), ENG._width(i_x), ENG._width(None)) == (6, 6, 3, 4, 1)
    keep = torch.tensor([True, False, True, True, False, True])
    assert ENG._filter_rows(None, keep) is None
    assert torch.equal(ENG._filter_rows(X, keep), X[keep])
    fi = ENG._filter_rows(i_x, keep)
    assert torch.equal(fi.idx, i_x.idx[keep]) and fi.size == 4
    # a parameter of layout (3 × 2) used by two calls: 6 rows in 3 samples (2 each), and 3 rows (1 each)
    n = 3
    u1, v1 = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    u2, v2 = torch.randn(3, 3, generator=g, dtype=F64), torch.randn(3, 2, generator=g, dtype=F64)
    s1 = torch.tensor([0, 0, 1, 1, 2, 2])
    Gp = torch.zeros(n, 6, dtype=F64)
    Gp.index_add_(0, s1, (u1[:, :, None] * v1[:, None, :]).reshape(6, 6))
    Gp += (u2[:, :, None] * v2[:, None, :]).reshape(3, 6)
    K_ref = (Gp @ Gp.T).numpy()
    for blocks in ([(s1, u1, v1), (None, u2, v2)], [(None, u2, v2), (s1, u1, v1)]):
        for entries in (2**24, 5, 1):
            ENG._BLOCK_ENTRIES, saved = entries, ENG._BLOCK_ENTRIES
            try:
                Ks = ENG._entry_gram_structured(blocks, n, F64, "cpu", {})
                Ke = ENG._entry_gram_explicit(blocks, n, F64, "cpu")
            finally:
                ENG._BLOCK_ENTRIES = saved
            assert _close(Ks, K_ref, n) and _close(Ke, K_ref, n)
    # biases (v = None) and one row per sample: the Gram of u alone, and the fast path's cache
    cache = {}
    Kb = ENG._entry_gram_structured([(None, u2, None)], n, F64, "cpu", cache)
    assert _close(Kb, (u2 @ u2.T).numpy(), n)
    Kb.zero_()  # a new tensor: the cached Gram of u is untouched
    Kb2 = ENG._entry_gram_structured([(None, u2, v2)], n, F64, "cpu", cache)
    assert _close(Kb2, ((u2 @ u2.T) * (v2 @ v2.T)).numpy(), n)
    Kx = ENG._entry_gram_explicit([(None, u2, None)], n, F64, "cpu")
    assert _close(Kx, (u2 @ u2.T).numpy(), n)
    # one-hot rows in the fast path: the bool Gram is cast to the dtype
    i3 = ENG._Index(torch.tensor([1, 1, 0]), 2)
    Ki = ENG._entry_gram_structured([(None, i3, v2)], n, F64, "cpu", {})
    O3 = torch.eye(2, dtype=F64)[i3.idx]
    assert Ki.dtype == F64 and _close(Ki, ((O3 @ O3.T) * (v2 @ v2.T)).numpy(), n)


def test_gram_builder_row_helpers_of_each_layer_kind():
    """_call_rows / _delta_rows / _conv_padding / _segments on recorded calls, against the
    layers' own unfold and the documented layouts (weight factors (δ, a) for nn.Linear, (a, δ)
    for Conv1D)."""
    lin = torch.nn.Linear(3, 2).double()
    c = ENG._Call("lin", lin, "linear", 0)
    c.inp = torch.randn(4, 2, 3, generator=_gen(1), dtype=F64)
    delta = torch.randn(4, 2, 2, generator=_gen(2), dtype=F64)
    lead, fac = ENG._call_rows(c, delta)
    assert lead == (4, 2)
    assert torch.equal(fac["weight"][0], delta.reshape(8, 2)) and torch.equal(fac["weight"][1], c.inp.reshape(8, 3))
    assert torch.equal(fac["bias"][0], delta.reshape(8, 2)) and fac["bias"][1] is None
    c.kind = "hf_conv1d"
    _, fac = ENG._call_rows(c, delta)
    assert torch.equal(fac["weight"][0], c.inp.reshape(8, 3)) and torch.equal(fac["weight"][1], delta.reshape(8, 2))
    emb = torch.nn.Embedding(5, 2, padding_idx=3).double()
    e = ENG._Call("emb", emb, "embedding", 1)
    e.inp = torch.tensor([[0, 3], [4, 1]])
    lead, fac = ENG._call_rows(e, torch.ones(2, 2, 2, dtype=F64))
    assert (
        lead == (2, 2) and fac["weight"][0].size == 5 and torch.equal(fac["weight"][0].idx, torch.tensor([0, 3, 4, 1]))
    )
    assert torch.equal(fac["_keep"], torch.tensor([True, False, True, True]))
    emb.padding_idx = None
    assert "_keep" not in ENG._call_rows(e, torch.ones(2, 2, 2, dtype=F64))[1]
    for conv, shape in (
        (torch.nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=1), (4, 2, 7)),
        (torch.nn.Conv1d(2, 3, 2, dilation=2, padding="same"), (4, 2, 7)),
        (torch.nn.Conv1d(2, 3, 3, padding="valid"), (2, 7)),  # unbatched
        (torch.nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 0)), (4, 2, 5, 6)),
        (torch.nn.Conv2d(2, 3, 3, padding="same", dilation=(1, 2)), (4, 2, 5, 6)),
    ):
        conv = conv.double()
        kind = "conv1d" if isinstance(conv, torch.nn.Conv1d) else "conv2d"
        cc = ENG._Call("conv", conv, kind, 2)
        cc.inp = torch.randn(shape, generator=_gen(3), dtype=F64)
        out = conv(cc.inp)
        d = torch.randn(out.shape, generator=_gen(4), dtype=F64)
        lead, fac = ENG._call_rows(cc, d)
        xb = cc.inp if len(shape) == conv.weight.ndim else cc.inp[None]
        db = d if len(shape) == conv.weight.ndim else d[None]
        N = xb.shape[0]
        L = math.prod(db.shape[2:])
        assert lead == (N, L)
        # Σ_r δ_r ⊗ a_r is the weight gradient of ⟨δ, conv(x)⟩, computed here by autograd
        w = conv.weight.detach().clone().requires_grad_(True)
        if kind == "conv1d":
            y = torch.nn.functional.conv1d(xb, w, None, conv.stride, conv.padding, conv.dilation)
        else:
            y = torch.nn.functional.conv2d(xb, w, None, conv.stride, conv.padding, conv.dilation)
        (gw,) = torch.autograd.grad((y * db).sum(), w)
        du, a = fac["weight"]
        assert du.shape == (N * L, 3)
        assert torch.allclose((du.T @ a).reshape(gw.shape), gw, rtol=1e-12, atol=1e-12)
        assert torch.equal(ENG._delta_rows(cc, d), db.reshape(N, 3, L).transpose(1, 2).reshape(-1, 3))
        assert fac["bias"][1] is None and torch.equal(fac["bias"][0], du)
        pad = ENG._conv_padding(conv)
        if isinstance(conv.padding, str) and conv.padding == "valid":
            assert pad == (0,)
        elif isinstance(conv.padding, str):
            assert pad == tuple(dl * (k - 1) // 2 for dl, k in zip(conv.dilation, conv.kernel_size))
        else:
            assert pad == tuple(conv.padding)
    bad = ENG._Call("conv", torch.nn.Conv1d(2, 3, 3).double(), "conv1d", 2)
    bad.inp = torch.randn(4, 2, 7, dtype=F64)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG._call_rows(bad, torch.zeros(4, 3, 6, dtype=F64))
    assert str(exc.value) == "conv: unfolded patches (5) do not match the output positions (1, 6)"
    assert ENG._segments((5,), 5, "w") is None and ENG._segments((), 1, "w") is None
    assert torch.equal(ENG._segments((3, 2), 3, "w"), torch.tensor([0, 0, 1, 1, 2, 2]))
    for lead, n in (((2, 3), 3), ((), 2), ((6,), 3)):
        with pytest.raises(HypothesesNotMet) as exc:
            ENG._segments(lead, n, "lin (call #0)")
        R = math.prod(lead) if lead else 1
        assert str(exc.value) == (
            f"lin (call #0): its {R} output rows (leading shape {lead}) cannot be assigned to the n = {n} "
            "samples (neither one row per sample nor a batch-first axis of length n)"
        )
    assert ENG._describe_uses("w", [(c, "weight", 8), (e, "weight", 4)], 4) == (
        "w: 2 call(s) lin#0(hf_conv1d, 2 rows/sample) + emb#1(embedding)"
    )
    anon = ENG._Call("", lin, "linear", 3)
    assert ENG._describe_uses("bias", [(anon, "bias", 4)], 4) == "bias: 1 call(s) model#3(linear)"
    fresh = ENG._Call("m", lin, "linear", 7)
    assert (fresh.name, fresh.mod, fresh.kind, fresh.order) == ("m", lin, "linear", 7)
    assert (fresh.inp, fresh.version, fresh.probe, fresh.out_fn, fresh.shared) == (None, None, None, None, False)
    assert fresh.targets == {} and fresh.entry == {}


class _PTZoo(torch.nn.Module):
    """A causal LM through every per-token use: a token Embedding (padding_idx) tied to the LM
    head, a position Embedding called once for all windows, a Linear and a transformers Conv1D
    before a causal prefix mean (signals over all earlier positions), a Linear and a second
    Embedding after it (position-wise: diagonal), the head's bias, and a Linear never called."""

    def __init__(self, V=6, d=3, T=4):
        super().__init__()
        self.tok = torch.nn.Embedding(V, d, padding_idx=0)
        self.pos = torch.nn.Embedding(T, d)
        self.inp = torch.nn.Linear(d, d + 1)  # not square: (out, in) and (in, out) layouts differ
        self.hf = _hf_conv1d(d + 1, d)
        self.post = torch.nn.Linear(d + 1, d)
        self.tok2 = torch.nn.Embedding(V, d, padding_idx=0)
        self.head = torch.nn.Linear(d, V)
        self.head.weight = self.tok.weight
        self.spare = torch.nn.Linear(2, 2)

    def forward(self, x):
        T = x.shape[-1]
        h = self.tok(x) + self.pos(torch.arange(T))
        u = torch.tanh(self.inp(h)) * self.hf(h)
        prefix = torch.cumsum(u, dim=-2) / torch.arange(1, T + 1, dtype=u.dtype)[:, None]
        z = torch.tanh(self.post(prefix)) + self.tok2(x)
        return self.head(z)


_PT_NAMES = (
    "tok.weight",
    "pos.weight",
    "inp.weight",
    "inp.bias",
    "hf.weight",
    "hf.bias",
    "post.weight",
    "post.bias",
    "tok2.weight",
    "head.bias",
    "spare.weight",
)


def _pt_zoo_lm(cls, m, T):
    """The per-token zoo ``cls(T=T)`` (seed 9) on m windows with two padding tokens: (lm, x, y)."""
    lm, ctx, x, y = _causal_lm(functools.partial(cls, T=T), 9, m, T, 6)
    ctx[0, 1] = 0  # padding tokens
    ctx[1, 3] = 0
    return lm, x, y


def _pt_zoo(m=2, T=4):
    lm, x, y = _pt_zoo_lm(_PTZoo, m, T)
    logp, logp_of = _next_token_logps(lm, x, y)

    params = _params(lm, _PT_NAMES)
    G = _loop_G(logp_of, params, m * T)
    return lm, logp, G


def _pt_lines(path):
    pre = {
        "tok.weight": "tok.weight: 2 call(s) tok#0(embedding) + head#6(linear); route ",
        "pos.weight": "pos.weight: 1 call(s) pos#1(embedding); route ",
        "inp.weight": "inp.weight: 1 call(s) inp#2(linear); route ",
        "inp.bias": "inp.bias: 1 call(s) inp#2(linear); route ",
        "hf.weight": "hf.weight: 1 call(s) hf#3(hf_conv1d); route ",
        "hf.bias": "hf.bias: 1 call(s) hf#3(hf_conv1d); route ",
    }
    diag = {
        "post.weight": "post.weight: 1 call(s) post#4(linear); route diagonal (position-wise)",
        "post.bias": "post.bias: 1 call(s) post#4(linear); route diagonal (position-wise)",
        "tok2.weight": "tok2.weight: 1 call(s) tok2#5(embedding); route diagonal (position-wise)",
        "head.bias": "head.bias: 1 call(s) head#6(linear); route diagonal (position-wise)",
        "spare.weight": "spare.weight: no call reaches log p (zero scores)",
    }
    return pre, diag


@pytest.mark.parametrize(
    ("path", "chunk", "entries"),
    [("auto", None, None), ("structured", 3, None), ("explicit", 1, None), ("structured", 2, 7), ("explicit", 3, 7)],
)
def test_gram_builder_per_token_zoo_equals_the_loop(path, chunk, entries, monkeypatch):
    """The per-token Gram K = G Gᵀ/n on every use kind equals the loop's, by every route, with
    target chunks of 1–3 of the 4 positions and row/column blocks of 7 entries; each tensor's
    route is the one asked for (where it applies), else the cheaper estimate."""
    m, T = 2, 4
    n = m * T
    lm, logp, G = _pt_zoo(m, T)
    K_ref = _gram_ref(G)
    if entries is not None:
        monkeypatch.setattr(ENG, "_BLOCK_ENTRIES", entries)
    sg = ENG.structured_gram_per_token(lm, logp, _PT_NAMES, check_rows=n, seed=1, path=path, target_chunk=chunk)
    assert _close(sg.K, K_ref, n)
    assert torch.equal(sg.K, sg.K.T) and sg.K.dtype == F64 and sg.K.shape == (n, n)
    assert sg.P == G.shape[1] == 18 + 12 + 12 + 4 + 12 + 4 + 12 + 3 + 18 + 6 + 4
    assert sg.checks == (
        f"H2 (independent windows) verified with autograd on {n} sampled targets and one random "
        f"combination of all {n}; H1 on the autograd graph"
    )
    pre, diag = _pt_lines(path)
    assert len(sg.structure) == len(_PT_NAMES)
    for name, line in zip(_PT_NAMES, sg.structure):
        if name in diag:
            assert line == diag[name]
            continue
        assert line.startswith(pre[name]), line
        route, costs = line[len(pre[name]) :].split(" (estimated ")
        assert costs.endswith(" s)")
        est = dict(item.rsplit(" ", 2)[:2] for item in costs[:-1].split(", "))
        est = {k: float(v) for k, v in est.items()}
        # one dense use has both routes; a bias or a tied tensor (two uses) only the explicit one
        keys = {"explicit", "structured"} if name in ("pos.weight", "inp.weight", "hf.weight") else {"explicit"}
        assert set(est) == keys and all(v > 0 for v in est.values())
        if path == "auto":
            assert route == min(est, key=est.get)
        else:
            assert route == (path if path in est else "explicit")


def test_gram_builder_per_token_operator_and_lanczos_against_the_loop():
    """The factored operator v ↦ K v (every use's matvec / rmatvec) against K_ref v, and the
    Lanczos λ_max on it against the dense top eigenvalue."""
    m, T = 2, 4
    n = m * T
    lm, logp, G = _pt_zoo(m, T)
    K_ref = _gram_ref(G)
    lp0 = ENG._validate_lp0(logp)
    entries, uses, checks = ENG._record_per_token(lm, logp, _PT_NAMES, lp0, 0, 0, None)
    assert checks == "none (check_rows=0)" and [k for k, _ in entries] == list(_PT_NAMES)
    op = ENG._PerTokenOperator(uses, m, T)
    V = torch.randn(n, 3, generator=_gen(12), dtype=F64)
    for v in V.T:
        assert np.abs(op(v).numpy() - K_ref @ v.numpy()).max() <= 256 * EPS * n * np.abs(K_ref).max() * float(
            v.abs().max()
        )
    # each tensor's own block: G_θ(G_θᵀ w) from its uses
    col = 0
    for ei, (_name, t) in enumerate(entries):
        Gi = G[:, col : col + t.numel()].numpy()
        col += t.numel()
        w = V[:, 0]
        if not uses[ei]:
            assert not Gi.any()
            continue
        W = w.reshape(m, T)
        g = sum(u.rmatvec(W) for u in uses[ei])
        assert g.shape == t.shape
        assert np.abs(g.reshape(-1).numpy() - Gi.T @ w.numpy()).max() <= 1e-12 * (1 + np.abs(Gi).max())
        back = sum(u.matvec(g) for u in uses[ei])
        assert back.shape == (m, T)
        assert np.abs(back.reshape(-1).numpy() - Gi @ (Gi.T @ w.numpy())).max() <= 1e-12 * (1 + np.abs(Gi).max()) ** 2
    ref = _np_top(K_ref)
    lz = ENG.lambda_max_per_token(lm, logp, _PT_NAMES, method="lanczos", tol=1e-13, check_rows=2)
    assert lz.value == pytest.approx(ref, rel=1e-10, abs=0)
    gr = ENG.lambda_max_per_token(lm, logp, _PT_NAMES, method="gram")
    assert gr.value == pytest.approx(ref, rel=1e-12, abs=0)


# --------------------------------------------------------------------------------------
# Gram builders: what they refuse, with the exact reasons
# --------------------------------------------------------------------------------------


class _Mix(torch.nn.Module):
    """A Linear whose output rows are mixed across samples by a fixed matrix M after the call."""

    def __init__(self, M):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("M", M)

    def forward(self, x):
        return self.M @ self.lin(x)


def _mix_model(M, n=5):
    torch.manual_seed(3)
    model = _Mix(M).double()
    x = torch.randn(n, 3, generator=_gen(3), dtype=F64)

    def logp():
        return torch.log_softmax(model(x), -1)[:, 0]

    return model, logp


def test_gram_builder_per_sample_refusals_name_the_problem():
    n = 5
    first = int(torch.randperm(n, generator=_gen(0))[0])  # the sample verified first (seed 0)
    tail = (
        "the per-sample scores are not rank one per row for this model/subset (a mixing layer such as "
        "attention, batch-norm in training mode, or an embedding whose rows feed later positions)"
    )
    head = "structured Gram hypotheses not met for 'lin.bias', 'lin.weight': the output of lin (call #0) "
    model, logp = _mix_model(torch.eye(n, dtype=F64) + 0.5)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(model, logp, ["lin.weight", "lin.bias"])
    msg = str(exc.value)
    pre = head + f"influences other samples' log-probabilities than its own rows' (autograd check on sample {first}: "
    assert msg.startswith(pre) and msg.endswith("); " + tail), msg
    err, tol = msg[len(pre) : -len(tail) - 3].split(" > ")
    assert float(err[len("error ") :]) > 1e-3 and 0 < float(tol) < 1e-10
    # samples a, b ≠ the verified one mixed with each other: only the random combination sees it
    a, b = [i for i in range(n) if i != first][:2]
    M = torch.eye(n, dtype=F64)
    M[a, b] = M[b, a] = 0.5
    model, logp = _mix_model(M)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(model, logp, ["lin.weight", "lin.bias"], check_rows=1)
    assert "(autograd check on a random combination of all samples: error " in str(exc.value)
    # nothing verified with check_rows=0: the mixed model's Gram is returned unverified
    assert ENG.structured_gram_details(model, logp, ["lin.weight"], check_rows=0).checks == "none (check_rows=0)"
    # a mixing just above / below the 1024·eps·max|w|·max|δ| tolerance
    lin_only = torch.nn.Linear(3, 2).double()
    x = torch.randn(n, 3, generator=_gen(4), dtype=F64)
    for c, refused in ((1e-9, True), (1e-17, False)):
        Mc = torch.eye(n, dtype=F64) + c * (torch.ones(n, n, dtype=F64) - torch.eye(n, dtype=F64))

        def lp(Mc=Mc):
            return torch.log_softmax(Mc @ lin_only(x), -1)[:, 0]

        if refused:
            with pytest.raises(HypothesesNotMet, match="influences other samples"):
                ENG.structured_gram(lin_only, lp, ["weight"], check_rows=n)
        else:
            ENG.structured_gram(lin_only, lp, ["weight"], check_rows=n)
    for bad in (torch.ones(n, dtype=torch.long), [0.0] * n):
        with pytest.raises(InputError) as exc:
            ENG.structured_gram(lin_only, lambda bad=bad: bad, ["weight"])
        assert str(exc.value) == "per_sample_logp() must return a floating tensor of n log-probabilities"
    with pytest.raises(InputError) as exc:
        ENG.structured_gram(lin_only, lambda: lin_only(x)[:0, 0], ["weight"])
    assert str(exc.value) == "per_sample_logp() returned no log-probabilities"
    with pytest.raises(InputError) as exc:
        ENG.structured_gram(lin_only, lambda: lin_only(x)[:, 0] / 0.0, ["weight"])
    assert str(exc.value) == "per_sample_logp() returned a NaN or inf log-probability"
    with pytest.raises(InputError) as exc:
        ENG.structured_gram(lin_only, lambda: lin_only(x)[:, 0].detach(), ["weight"])
    assert str(exc.value) == (
        "per_sample_logp() returned a tensor without an autograd graph (computed under torch.no_grad or detached?)"
    )
    for rows in (True, -1, 1.5):
        with pytest.raises(InputError) as exc:
            ENG.structured_gram(lin_only, lambda: lin_only(x)[:, 0], ["weight"], check_rows=rows)
        assert str(exc.value) == f"check_rows must be a non-negative integer, got {rows!r}"

    def inplace():
        h = x.clone()
        out = lin_only(h)
        h.add_(1.0)
        return out[:, 0]

    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(lin_only, inplace, ["weight"])
    assert str(exc.value) == (
        "the input of  (call #0) was modified in place after the call; the recorded activations are not those used"
    )
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(lin_only, lambda: lin_only(input=x)[:, 0], ["weight"])
    assert str(exc.value) == ": expected one tensor input and one tensor output"


def test_gram_builder_score_rows_comparison():
    """score_rows: compared on the sampled rows (seeded), to 1e-8·‖K‖_max; skipped with check_rows=0."""
    n = 5
    model, logp, names, G = _gram_zoo(n)
    K_ref = _gram_ref(G)
    seen = []

    def rows(scale):
        def f(idx):
            seen.append(idx.clone())
            return scale * G[idx]

        return f

    sg = ENG.structured_gram_details(model, logp, names, check_rows=2, seed=3, score_rows=rows(1 + 2.5e-9))
    assert torch.equal(seen[-1], torch.randperm(n, generator=_gen(3))[:2])
    assert sg.checks.endswith("; K[idx, idx] equals score_rows on 2 rows")
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_details(model, logp, names, check_rows=n, score_rows=rows(2.0))
    err, scale = 3 * np.abs(K_ref).max(), np.abs(K_ref).max()
    assert str(exc.value) == (
        f"structured Gram disagrees with the score rows by {err:.3g} (‖K‖_max {scale:.3g}): "
        "the per-sample scores are not rank one per layer call for this model/subset"
    )
    with pytest.raises(HypothesesNotMet, match="disagrees with the score rows"):
        ENG.structured_gram_details(model, logp, names, check_rows=n, score_rows=rows(1 + 1e-6))
    quiet = ENG.structured_gram_details(model, logp, names, check_rows=0, score_rows=rows(2.0))
    assert quiet.checks == "none (check_rows=0)" and _close(quiet.K, K_ref, n)


def test_gram_builder_theta_never_called_gives_zero_scores():
    """θ held only by a module the forward never calls: every score is zero, K = 0 (no recorded
    call to differentiate), for the per-sample and the per-token Gram."""
    n = 5
    model, logp, names, G = _gram_zoo(n)
    zero = ENG.structured_gram_details(model, logp, ["spare.weight", "spare.bias"])
    assert torch.equal(zero.K, torch.zeros(n, n, dtype=F64))
    assert zero.structure == ("spare.weight: 0 call(s) ", "spare.bias: 0 call(s) ") and zero.P == 6
    # a called module whose output never reaches log p: no block at all, K = 0 in lp's dtype
    dead = torch.nn.ModuleDict({"lin": torch.nn.Linear(3, 2).double(), "dead": torch.nn.Linear(3, 2).double()})
    x = torch.randn(4, 3, generator=_gen(15), dtype=F64)

    def dead_logp():
        dead["dead"](x)
        return torch.log_softmax(dead["lin"](x), -1)[:, 0]

    for rows in (0, 1):
        d0 = ENG.structured_gram_details(dead, dead_logp, ["dead.weight"], check_rows=rows)
        assert d0.K.dtype == F64 and torch.equal(d0.K, torch.zeros(4, 4, dtype=F64))
        assert d0.checks == ("none needed (no recorded call reaches log p)" if rows else "none (check_rows=0)")
    lm, lp, _ = _pt_zoo(2, 4)
    pt = ENG.structured_gram_per_token(lm, lp, ["spare.weight"])
    assert torch.equal(pt.K, torch.zeros(8, 8, dtype=F64))
    assert pt.structure == ("spare.weight: no call reaches log p (zero scores)",)


class _Crosstalk(torch.nn.Module):
    """An Embedding and a head, with the windows mixed (a batch mean) before the head."""

    def __init__(self, V=6, d=3):
        super().__init__()
        self.emb = torch.nn.Embedding(V, d)
        self.head = torch.nn.Linear(d, V)

    def forward(self, x):
        h = self.emb(x)
        return self.head(h + 0.5 * h.mean(0, keepdim=True))


def test_gram_builder_per_token_refusals_name_the_problem():
    m, T = 2, 3
    x = torch.randint(0, 6, (m, T), generator=_gen(5))
    torch.manual_seed(5)
    ct = _Crosstalk().double().eval()
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(ct, lambda: torch.log_softmax(ct(x), -1)[..., 0], ["emb.weight"])
    first = int(torch.randperm(m * T, generator=_gen(0))[0])
    msg = str(exc.value)
    pre = (
        "per-token structured Gram hypotheses not met at emb (call #0): windows interact "
        f"(autograd check on target {first}: error "
    )
    tail = (
        "); the m rows of the batch must be independent sequences (no batch-norm in training mode, no "
        "cross-window attention)"
    )
    assert msg.startswith(pre) and msg.endswith(tail), msg
    err, tol = msg[len(pre) : -len(tail)].split(" > ")
    assert float(err) > 1e-3 and 0 < float(tol) < 1e-10
    lm, logp, _ = _pt_zoo(2, 4)
    with pytest.raises(InputError) as exc:
        ENG.structured_gram_per_token(lm, logp, ["head.bias"], path="fast")
    assert str(exc.value) == "unknown path 'fast'; expected one of ('auto', 'structured', 'explicit')"
    # a call with no window axis whose output the forward does not broadcast back
    torch.manual_seed(6)
    pos = torch.nn.Embedding(T, 3).double()
    head = torch.nn.Linear(3, 6).double()

    def not_broadcast():
        h = pos(torch.arange(T))[0] + 0.0 * x[..., None]
        return torch.log_softmax(head(h), -1)[..., 0]

    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(pos, not_broadcast, ["weight"])
    assert str(exc.value).startswith("the hooked forward changed log p by ") and str(exc.value).endswith(
        " (a call shared by all windows was given a per-window probe and the forward does not broadcast it "
        "back; or the model is not deterministic)"
    )
    lin = torch.nn.Linear(3, 3).double()
    e = torch.randn(T + 1, m, 3, generator=_gen(7), dtype=F64)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(lin, lambda: lin(e).sum(-1).T[:, :T], ["weight"])
    assert str(exc.value) == (
        f"output of shape {(T + 1, m, 3)} has no window axis of length {m} and is not a per-position "
        "call shared by all windows"
    ).join(["model: ", ""])
    conv = torch.nn.Conv1d(m, m, 1).double()
    s = torch.randn(m, m, T, generator=_gen(8), dtype=F64)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(conv, lambda: conv(s).sum(1), ["weight"])
    assert str(exc.value) == ": convolutions are not supported by the per-token structured Gram"
    with pytest.raises(InputError) as exc:
        ENG.structured_gram_per_token(lin, lambda: lin(e[:m]).sum(-1).detach(), ["weight"])
    assert str(exc.value) == "per_token_logp() must return an (m, T) tensor with an autograd graph"


class _DiagLM(torch.nn.Module):
    """Only position-wise operations after every call (every use diagonal): an Embedding without
    padding_idx tied to the LM head, two Linears sharing one bias, and a Linear never called
    (listed first)."""

    def __init__(self, V=5, d=3):
        super().__init__()
        self.spare = torch.nn.Linear(2, 2)
        self.emb = torch.nn.Embedding(V, d)
        self.a = torch.nn.Linear(d, d)
        self.b = torch.nn.Linear(d, d)
        self.b.bias = self.a.bias
        self.head = torch.nn.Linear(d, V, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        h = self.emb(x)
        return self.head(torch.tanh(self.a(h)) * self.b(h))


def test_gram_builder_per_token_diagonal_ties_and_routes(monkeypatch):
    """Diagonal uses of tied tensors (an Embedding and the head in their two layouts, one bias in
    two Linears) against the loop, with a never-called tensor listed first; an unnamed (root)
    call; and the route of "auto" when the per-flop costs favour one route by far."""
    m, T = 2, 3
    n = m * T
    lm, _, x, y = _causal_lm(_DiagLM, 13, m, T, 5)

    logp, logp_of = _next_token_logps(lm, x, y)

    names = ("spare.weight", "emb.weight", "a.weight", "a.bias", "b.weight")
    params = _params(lm, names)
    G = _loop_G(logp_of, params, n)
    K_ref = _gram_ref(G)
    for path in ("auto", "explicit"):
        sg = ENG.structured_gram_per_token(lm, logp, names, check_rows=n, path=path)
        assert _close(sg.K, K_ref, n) and sg.P == G.shape[1]
        assert sg.structure == (
            "spare.weight: no call reaches log p (zero scores)",
            "emb.weight: 2 call(s) emb#0(embedding) + head#3(linear); route diagonal (position-wise)",
            "a.weight: 1 call(s) a#1(linear); route diagonal (position-wise)",
            "a.bias: 2 call(s) a#1(linear) + b#2(linear); route diagonal (position-wise)",
            "b.weight: 1 call(s) b#2(linear); route diagonal (position-wise)",
        )
    lz = ENG.lambda_max_per_token(lm, logp, names, method="lanczos", tol=1e-13)
    assert lz.value == pytest.approx(_np_top(K_ref), rel=1e-10, abs=0)
    # the root module's calls are named "model"
    root = torch.nn.Linear(3, 4).double()
    z = torch.randn(m, T, 3, generator=_gen(14), dtype=F64)
    sg = ENG.structured_gram_per_token(root, lambda: torch.log_softmax(root(z), -1)[..., 0], ["weight", "bias"])
    assert sg.structure == (
        "weight: 1 call(s) model#0(linear); route diagonal (position-wise)",
        "bias: 1 call(s) model#0(linear); route diagonal (position-wise)",
    )
    # "auto" takes the route of the smaller estimate: costs per flop that favour one by far
    lm2, logp2, G2 = _pt_zoo(2, 4)
    both = ("pos.weight", "inp.weight", "hf.weight")  # the tensors with both routes (one dense use)
    Gs = torch.cat([G2[:, 18:42], G2[:, 46:58]], 1).numpy()  # their columns in the order of _PT_NAMES
    for cheap in ("structured", "explicit"):
        dear = "explicit" if cheap == "structured" else "structured"
        monkeypatch.setitem(ENG._FLOP_COST, (F64, "cpu"), {cheap: 1e-30, dear: 1.0})
        sg = ENG.structured_gram_per_token(lm2, logp2, both, check_rows=0)
        assert _close(sg.K, Gs @ Gs.T / 8, 8)
        for line in sg.structure:
            assert f"; route {cheap} (estimated " in line, line


def test_gram_builder_one_sample_and_a_discarded_call():
    """n = 1 is a valid sample count; a hooked call whose output never reaches log p (computed and
    discarded) gives zero scores for its tensor, next to a live one."""
    torch.manual_seed(15)
    lin, dead = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    model = torch.nn.ModuleDict({"lin": lin, "dead": dead})
    x = torch.randn(4, 3, generator=_gen(15), dtype=F64)

    def logp(x=x):
        dead(x)  # recorded, never used
        return torch.log_softmax(lin(x), -1)[:, 0]

    G = _loop_G(lambda i: logp(x[i : i + 1])[0], [lin.weight, lin.bias, dead.weight], 4)
    sg = ENG.structured_gram_details(model, logp, ["lin.weight", "lin.bias", "dead.weight"], check_rows=4)
    assert _close(sg.K, _gram_ref(G), 4) and not G[:, 8:].any()
    one = ENG.structured_gram(model, lambda: logp(x[:1]), ["lin.weight", "lin.bias"])
    assert one.shape == (1, 1) and float(one[0, 0]) == pytest.approx(float(G[0, :8] @ G[0, :8]), rel=1e-12)


def test_gram_builder_per_token_cost_model():
    """The estimated seconds are flop counts times the seconds per flop of each kernel (here 2 s
    for the explicit GEMM, 0.5 s for the structured contraction): explicit 2·n·R·d0·d1 per use
    (R = 1 for a diagonal use) + 2·n²·d0·d1; structured 4·n²·R·d_δ contracted + 2·(m·R)²·d_x by
    GEMM (one dense use)."""
    m, T = 2, 4
    n = m * T
    lm, logp, _ = _pt_zoo(m, T)
    saved = dict(ENG._FLOP_COST)
    ENG._FLOP_COST[(F64, "cpu")] = {"structured": 0.5, "explicit": 2.0}
    try:
        sg = ENG.structured_gram_per_token(lm, logp, ("tok.weight", "inp.weight", "hf.bias"), check_rows=0)
    finally:
        ENG._FLOP_COST.clear()
        ENG._FLOP_COST.update(saved)
    R = T  # rows per window of a non-diagonal use
    tok = 2.0 * (2 * n * R * 6 * 3 + 2 * n * 1 * 6 * 3 + 2 * n * n * 6 * 3)  # embedding + head (diagonal)
    inp_e = 2.0 * (2 * n * R * 3 * 4 + 2 * n * n * 3 * 4)
    inp_s = 0.5 * (4 * n * n * R * 4) + 2.0 * (2 * (m * R) ** 2 * 3)
    hfb = 2.0 * (2 * n * R * 1 * 4 + 2 * n * n * 1 * 4)
    assert sg.structure[0].endswith(f"; route explicit (estimated explicit {tok:.2g} s)")
    route = "explicit" if inp_e < inp_s else "structured"
    assert sg.structure[1].endswith(f"; route {route} (estimated explicit {inp_e:.2g} s, structured {inp_s:.2g} s)")
    assert sg.structure[2].endswith(f"; route explicit (estimated explicit {hfb:.2g} s)")


def test_gram_builder_defaults_and_options_reach_the_per_sample_gram():
    """structured_gram / structured_gram_details: check_rows 1 and seed 0 by default, and
    score_rows / seed passed on."""
    n = 5
    model, logp, names, G = _gram_zoo(n)
    seen = []

    def rows(scale):
        def f(idx):
            seen.append(idx.clone())
            return scale * G[idx]

        return f

    sg = ENG.structured_gram_details(model, logp, names, score_rows=rows(1.0))
    assert torch.equal(seen[-1], torch.randperm(n, generator=_gen(0))[:1])
    assert sg.checks == (
        f"H2 verified with autograd on 1 sampled samples and one random combination of all {n}; "
        "H1 on the autograd graph; K[idx, idx] equals score_rows on 1 rows"
    )
    ENG.structured_gram(model, logp, names, score_rows=rows(1.0), seed=3, check_rows=2)
    assert torch.equal(seen[-1], torch.randperm(n, generator=_gen(3))[:2])
    with pytest.raises(HypothesesNotMet, match="disagrees with the score rows"):
        ENG.structured_gram(model, logp, names, score_rows=rows(2.0))
    # a mixing of the second sampled sample (seed 0) with another: only a second sampled row (or
    # the random combination) sees it, so the default check (one row) names the combination
    perm = torch.randperm(n, generator=_gen(0))
    a, b = int(perm[1]), int(perm[2])
    M = torch.eye(n, dtype=F64)
    M[a, b] = M[b, a] = 0.5
    mix, mlogp = _mix_model(M)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(mix, mlogp, ["lin.weight"])
    assert "(autograd check on a random combination of all samples: error " in str(exc.value)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(mix, mlogp, ["lin.weight"], check_rows=2)
    assert f"(autograd check on sample {a}: error " in str(exc.value)


class _Prefixed(torch.nn.Module):
    """A Linear on T + 1 rows per window (a zero row prepended), its last T rows read causally:
    rows per window ≠ positions."""

    def __init__(self, V=5, d=3):
        super().__init__()
        self.emb = torch.nn.Embedding(V, d)
        self.lin = torch.nn.Linear(d, d)
        self.head = torch.nn.Linear(d, V)

    def forward(self, x):
        h = self.emb(x)
        h = torch.cat([torch.zeros_like(h[:, :1]), h], 1)
        z = self.lin(h)
        z = (z[:, 1:] + z[:, :-1]) / 2  # position t reads rows t and t + 1 of the T + 1
        return self.head(torch.tanh(z))


def test_gram_builder_per_token_rows_per_window_differ_from_positions_and_conv2d_refused():
    m, T = 2, 3
    n = m * T
    lm, _, x, y = _causal_lm(_Prefixed, 16, m, T, 5)

    logp, logp_of = _next_token_logps(lm, x, y)

    names = ("emb.weight", "lin.weight", "lin.bias")
    G = _loop_G(logp_of, _params(lm, names), n)
    K_ref = _gram_ref(G)
    for path in ("structured", "explicit"):
        sg = ENG.structured_gram_per_token(lm, logp, names, check_rows=n, path=path)
        assert _close(sg.K, K_ref, n)
    op = ENG._PerTokenOperator(ENG._record_per_token(lm, logp, names, logp().detach(), 0, 0, None)[1], m, T)
    v = torch.randn(n, generator=_gen(17), dtype=F64)
    assert np.abs(op(v).numpy() - K_ref @ v.numpy()).max() <= 1e-12 * np.abs(K_ref).max() * float(v.abs().max())
    conv = torch.nn.Conv2d(m, m, 1).double()
    s = torch.randn(m, m, T, 1, generator=_gen(18), dtype=F64)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(conv, lambda: conv(s).sum((1, 3)), ["weight"])
    assert str(exc.value) == ": convolutions are not supported by the per-token structured Gram"


class _NoVmapTanh(torch.autograd.Function):
    """tanh with a hand-written backward and no vmap rule: a batched (is_grads_batched) backward
    through it fails, so the per-token signals come from the one-target-at-a-time fallback."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        assert math.isfinite(g.sum().item())  # .item() of a batched tensor: vmap refuses it
        return g * (1 - y * y)


def test_gram_builder_per_token_signals_without_a_batching_rule_and_root_names():
    m, T = 2, 3
    n = m * T
    torch.manual_seed(19)
    emb, head = torch.nn.Embedding(5, 3).double(), torch.nn.Linear(3, 5).double()
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    ctx = torch.randint(0, 5, (m, T + 1), generator=_gen(19))
    x, y = ctx[:, :-1], ctx[:, 1:]

    def logits(x):
        h = emb(x)
        prefix = torch.cumsum(h, 1) / torch.arange(1, x.shape[1] + 1, dtype=F64)[:, None]
        return head(_NoVmapTanh.apply(prefix))

    logp, logp_of = _next_token_logps(logits, x, y)

    names = ("emb.weight", "head.weight")
    G = _loop_G(logp_of, [emb.weight, head.weight], n)
    sg = ENG.structured_gram_per_token(model, logp, names, check_rows=n, target_chunk=2)
    assert _close(sg.K, _gram_ref(G), n)
    # an unnamed (root) call in the per-sample structure lines
    root = torch.nn.Linear(3, 2).double()
    z = torch.randn(4, 3, generator=_gen(20), dtype=F64)
    sd = ENG.structured_gram_details(root, lambda: torch.log_softmax(root(z), -1)[:, 0], ["weight"])
    assert sd.structure == ("weight: 1 call(s) model#0(linear)",)


def test_gram_builder_functional_call_substitutes():
    """A forward through torch.func.functional_call with detached copies of θ (substituted
    tensors, differentiated through leaf copies during each call only) gives the loop's K, says
    so in the checks, and leaves the model's own parameters in place; the same with substitutes
    that require grad, whose uses the graph check sees."""
    n = 4
    torch.manual_seed(21)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x = torch.randn(n, 3, generator=_gen(21), dtype=F64)
    names = ["0.weight", "0.bias", "2.weight"]
    params = dict(net.named_parameters())
    own = {k: v for k, v in params.items()}
    G = _loop_G(lambda i: torch.log_softmax(net(x[i : i + 1]), -1)[0, 0], [params[k] for k in names], n)
    K_ref = _gram_ref(G)
    for grad in (False, True):
        subs = {k: (v.detach().clone().requires_grad_(True) if grad else v.detach().clone()) for k, v in params.items()}

        def logp(subs=subs):
            return torch.log_softmax(torch.func.functional_call(net, subs, (x,)), -1)[:, 0]

        sg = ENG.structured_gram_details(net, logp, names, check_rows=n)
        assert _close(sg.K, K_ref, n)
        assert all(net._modules[k.split(".")[0]]._parameters[k.split(".")[1]] is own[k] for k in own)
        tail = (
            "H1 on the autograd graph, but uses outside the hooked calls of tensors the forward substitutes "
            "without requires_grad (functional_call with detached tensors) are not visible"
        )
        assert sg.checks == (
            f"H2 verified with autograd on {n} sampled samples and one random combination of all {n}; " + tail
        )
        assert all(not s.requires_grad for s in subs.values()) or grad


def test_gram_builder_per_sample_subsets_dtypes_ties_and_direct_uses():
    """θ subsets that skip roles or list a never-called tensor first, a float32 model scored in
    float64, an Embedding with padding and one row per sample, a tie that functional_call breaks,
    and a θ tensor used only directly (no recorded call at all)."""
    n = 5
    model, logp, names, G = _gram_zoo(n)
    K_full = _gram_ref(G)
    cols = {k: c for k, c in zip(names, np.cumsum([0] + [p.numel() for _, p in model.named_parameters()]))}

    def block(*ks):
        idx = np.concatenate([np.arange(cols[k], cols[k] + dict(model.named_parameters())[k].numel()) for k in ks])
        Gs = G.numpy()[:, idx]
        return Gs @ Gs.T / n

    for sub in (["lin.bias"], ["spare.weight", "lin.weight", "hf.bias"], ["spare.bias", "emb.weight"]):
        sg = ENG.structured_gram_details(model, logp, sub)
        assert _close(sg.K, block(*[k for k in sub if not k.startswith("spare")]), n)
    assert not np.isnan(K_full).any()
    # float32 layers, log p in float64: every factor is cast, K is float64
    torch.manual_seed(22)
    lin32 = torch.nn.Linear(3, 2)
    x32 = torch.randn(4, 3, generator=_gen(22))
    lp64 = lambda: torch.log_softmax(lin32(x32), -1)[:, 0].double()  # noqa: E731
    G32 = _loop_G(lambda i: torch.log_softmax(lin32(x32[i : i + 1]), -1)[0, 0], [lin32.bias], 4)
    Kb = ENG.structured_gram(lin32, lp64, ["bias"], check_rows=0)
    assert Kb.dtype == F64
    assert np.abs(Kb.numpy() - G32.numpy() @ G32.numpy().T / 4).max() <= 1e-6 * np.abs(Kb.numpy()).max()
    # an Embedding with padding_idx, one token per sample (some of them padding)
    emb = torch.nn.Embedding(4, 3, padding_idx=2).double()
    tok = torch.tensor([0, 2, 1, 2, 3])
    elp = lambda t=tok: torch.log_softmax(torch.tanh(emb(t)), -1)[:, 0]  # noqa: E731
    Ge = _loop_G(lambda i: elp(tok[i : i + 1])[0], [emb.weight], 5)
    assert _close(ENG.structured_gram(emb, elp, ["weight"]), Ge.numpy() @ Ge.numpy().T / 5, 5)
    # functional_call with tie_weights=False gives the two modules two different tensors
    tied, tlogp, tnames, _ = _gram_zoo(n)
    subs = {k: v.detach().clone() for k, v in tied.named_parameters(remove_duplicate=False)}
    g = _gen(6)
    inputs = (
        torch.randn(n, 3, generator=g, dtype=F64),
        torch.randn(n, 2, 3, generator=g, dtype=F64),
        torch.randn(n, 2, 7, generator=g, dtype=F64),
        torch.randn(n, 1, 4, 5, generator=g, dtype=F64),
        torch.randint(0, 5, (n, 2), generator=g),
    )

    def untied():
        out = torch.func.functional_call(tied, subs, inputs, tie_weights=False)
        return torch.log_softmax(out, -1)[:, 0]

    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(tied, untied, ["emb.weight"])
    assert str(exc.value) == (
        "'emb.weight' is tied between modules but the forward gave them 2 different tensors "
        "(functional_call with tie_weights=False?)"
    )
    # a θ tensor read only directly (its module never called): 1 use in the graph, 0 recorded
    lin = torch.nn.Linear(3, 2).double()
    xx = torch.randn(4, 3, generator=_gen(23), dtype=F64)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(
            lin, lambda: torch.log_softmax(torch.nn.functional.linear(xx, lin.weight), -1)[:, 0], ["weight"]
        )
    assert str(exc.value) == (
        "'weight' is used 1 time(s) in the graph of log p but only 0 use(s) are calls of a supported "
        "module: it is also used directly (e.g. F.linear(x, weight) or a weight read by another module), "
        "which the structured Gram cannot see"
    )
    # one sample as an unbatched (1-D) input: one row, no "rows/sample"
    one = ENG.structured_gram_details(lin, lambda: torch.log_softmax(lin(xx[0]), -1)[:1], ["weight", "bias"])
    assert one.structure == ("weight: 1 call(s) model#0(linear)", "bias: 1 call(s) model#0(linear)")
    Gd = _loop_G(lambda i: torch.log_softmax(lin(xx[0]), -1)[0], [lin.weight, lin.bias], 1)
    assert _close(one.K, Gd.numpy() @ Gd.numpy().T, 1)


class _SharedLM(torch.nn.Module):
    """Calls shared by all windows: a Linear and a transformers Conv1D on a fixed (T, d) position
    feature table, and a position Embedding called on a (1, T) index."""

    def __init__(self, V=5, d=3, T=3):
        super().__init__()
        self.tok = torch.nn.Embedding(V, d)
        self.pos = torch.nn.Embedding(T, d)
        self.proj = torch.nn.Linear(2, d)
        self.hf = _hf_conv1d(d, 2)
        self.head = torch.nn.Linear(d, V)
        self.register_buffer("feats", torch.randn(T, 2, generator=_gen(24), dtype=F64))

    def forward(self, x):
        T = x.shape[1]
        h = self.tok(x) + self.proj(self.feats) + self.hf(self.feats) + self.pos(torch.arange(T)[None])
        prefix = torch.cumsum(h, 1) / torch.arange(1, T + 1, dtype=h.dtype)[:, None]
        return self.head(torch.tanh(prefix))


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_gram_builder_per_token_shared_calls_and_a_float32_model(dtype):
    m, T = 2, 3
    n = m * T
    lm, _, x, y = _causal_lm(_SharedLM, 25, m, T, 5, dtype)

    def logp():
        return torch.log_softmax(lm(x), -1).gather(-1, y[..., None]).squeeze(-1).double()

    def logp_of(i):
        b, t = divmod(i, T)
        return torch.log_softmax(lm(x[b : b + 1]), -1)[0, t, y[b, t]].double()

    names = ("tok.weight", "pos.weight", "proj.weight", "proj.bias", "hf.weight", "hf.bias")
    G = _loop_G(logp_of, _params(lm, names), n)
    K_ref = _gram_ref(G)
    for path in ("structured", "explicit"):
        # (float32 layers: the H2 check is the subject of the test below)
        sg = ENG.structured_gram_per_token(lm, logp, names, check_rows=n if dtype == F64 else 0, path=path)
        assert sg.K.dtype == F64
        if dtype == F64:
            assert _close(sg.K, K_ref, n)
        else:  # float32 signals and activations: float32 accuracy
            assert np.abs(sg.K.numpy() - K_ref).max() <= 1e-5 * np.abs(K_ref).max()


def test_float32_layers_scored_in_float64_pass_the_h2_check():
    """Layers in float32 and log p cast to float64: the VJPs through the layers are float32, so the
    H2 check's tolerance is taken in the layers' precision (it refused such models as "mixing" at
    float64's 1024·eps before)."""
    torch.manual_seed(22)
    lin32 = torch.nn.Linear(3, 2)
    x32 = torch.randn(4, 3, generator=_gen(22))
    sg = ENG.structured_gram_details(lin32, lambda: torch.log_softmax(lin32(x32), -1)[:, 0].double(), ["bias"])
    assert sg.K.dtype == F64 and sg.checks.startswith("H2 verified with autograd on 1 sampled samples")
    m, T = 2, 3
    torch.manual_seed(25)
    lm = _SharedLM().float().eval()
    x = torch.randint(0, 5, (m, T), generator=_gen(25))
    pt = ENG.structured_gram_per_token(lm, lambda: torch.log_softmax(lm(x), -1)[..., 0].double(), ["tok.weight"])
    assert pt.checks.startswith("H2 (independent windows) verified with autograd on 1 sampled targets")
    # a genuine mixing is still refused in float32
    mix = torch.eye(4) + 0.5
    with pytest.raises(HypothesesNotMet, match="influences other samples"):
        ENG.structured_gram(lin32, lambda: torch.log_softmax(mix @ lin32(x32), -1)[:, 0].double(), ["bias"])


def test_gram_builder_measured_flop_costs_contract(monkeypatch):
    """The per-flop costs: measured once per (dtype, device) and cached, one positive finite
    seconds-per-flop for each route, plausible for a CPU kernel (1e-14 … 1e-5 s per flop)."""
    monkeypatch.setattr(ENG, "_FLOP_COST", {})
    cost = ENG._measured_flop_costs(F64, "cpu")
    assert set(cost) == {"structured", "explicit"}
    assert all(isinstance(v, float) and math.isfinite(v) and 1e-14 < v < 1e-5 for v in cost.values())
    assert ENG._FLOP_COST == {(F64, "cpu"): cost} and ENG._measured_flop_costs(F64, "cpu") is cost
    c32 = ENG._measured_flop_costs(torch.float32, torch.device("cpu"))
    assert set(ENG._FLOP_COST) == {(F64, "cpu"), (torch.float32, "cpu")} and c32 is not cost


class _OddLM(torch.nn.Module):
    """A call whose output is discarded (before the live ones), a call under no_grad (its
    tensor gets no score), and one bias shared by a Linear before a causal prefix mean and one
    after it (a non-diagonal and a diagonal use of one tensor)."""

    def __init__(self, V=5, d=3):
        super().__init__()
        self.dead = torch.nn.Linear(d, d)
        self.frozen = torch.nn.Linear(d, d)
        self.emb = torch.nn.Embedding(V, d)
        self.a = torch.nn.Linear(d, d)
        self.b = torch.nn.Linear(d, d)
        self.b.bias = self.a.bias
        self.head = torch.nn.Linear(d, V)

    def forward(self, x):
        h = self.emb(x)
        self.dead(h)
        with torch.no_grad():
            f = self.frozen(h)
        u = torch.tanh(self.a(h)) + f
        prefix = torch.cumsum(u, 1) / torch.arange(1, x.shape[1] + 1, dtype=u.dtype)[:, None]
        return self.head(torch.tanh(self.b(prefix)))


def test_gram_builder_per_token_discarded_frozen_and_mixed_uses():
    m, T = 2, 3
    n = m * T
    lm, _, x, y = _causal_lm(_OddLM, 26, m, T, 5)

    logp, logp_of = _next_token_logps(lm, x, y)

    names = ("dead.weight", "frozen.weight", "a.bias", "emb.weight", "head.weight")
    G = _loop_G(logp_of, _params(lm, names), n)
    assert not G[:, :18].any()  # the discarded and the no_grad calls give no scores
    K_ref = _gram_ref(G)
    for path in ("auto", "explicit"):
        sg = ENG.structured_gram_per_token(lm, logp, names, check_rows=n, path=path)
        assert _close(sg.K, K_ref, n)
        assert sg.structure[0] == "dead.weight: no call reaches log p (zero scores)"
        assert sg.structure[2].startswith("a.bias: 2 call(s) a#3(linear) + b#4(linear); route explicit")
    lz = ENG.lambda_max_per_token(lm, logp, names, method="lanczos", tol=1e-13, check_rows=n)
    assert lz.value == pytest.approx(_np_top(K_ref), rel=1e-10, abs=0)
    # no live call at all (check_rows=0): zero K
    for sub in (["dead.weight"], ["frozen.weight"]):  # a discarded call; no live call at all
        z = ENG.structured_gram_per_token(lm, logp, sub, check_rows=0)
        assert torch.equal(z.K, torch.zeros(n, n, dtype=F64))
    # the input of a call modified in place after it; a log p of another shape under autograd
    lin = torch.nn.Linear(3, 3).double()
    e = torch.randn(m, T, 3, generator=_gen(27), dtype=F64)

    def inplace():
        h = e.clone()
        out = lin(h).sum(-1)
        h.add_(1.0)
        return out

    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(lin, inplace, ["weight"])
    assert str(exc.value) == "the input of  (call #0) was modified in place after the call"
    with pytest.raises(InputError) as exc:
        ENG.structured_gram_per_token(
            lin, lambda: lin(e).sum(-1) if not torch.is_grad_enabled() else lin(e).sum(-1).T, ["weight"]
        )
    assert str(exc.value) == "per_token_logp() must return an (m, T) tensor with an autograd graph"


def test_gram_builder_frozen_theta_repeated_substitutes_and_root_refusal():
    """θ tensors that do not require grad are scored and left frozen; a substituted tensor used
    by two calls of one module is one tensor (one leaf copy); a refusal names the root module as
    "the model"."""
    n = 4
    torch.manual_seed(28)
    model = _CalledTwice()
    x = torch.randn(n, 3, generator=_gen(28), dtype=F64)
    names = ["lin.weight", "lin.bias", "out.weight"]
    params = _params(model, names)
    G = _loop_G(lambda i: torch.log_softmax(model(x[i : i + 1]), -1)[0, 0], params, n)
    K_ref = _gram_ref(G)
    for p in params:
        p.requires_grad_(False)
    try:
        sg = ENG.structured_gram_details(model, lambda: torch.log_softmax(model(x), -1)[:, 0], names, check_rows=n)
        assert _close(sg.K, K_ref, n)
        assert not any(p.requires_grad for p in params)
    finally:
        for p in params:
            p.requires_grad_(True)
    subs = {k: v.detach().clone() for k, v in model.named_parameters()}

    def logp():
        return torch.log_softmax(torch.func.functional_call(model, subs, (x,)), -1)[:, 0]

    sub = ENG.structured_gram_details(model, logp, names, check_rows=n)
    assert _close(sub.K, K_ref, n)
    assert sub.structure[0] == "lin.weight: 2 call(s) lin#0(linear) + lin#1(linear)"
    ln = torch.nn.LayerNorm(3).double()
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(ln, lambda: ln(x)[:, 0], ["weight"])
    assert str(exc.value).startswith("structured Gram cannot score 'weight' (held by the model as 'weight'): ")


def test_gram_builder_root_module_named_model_in_refusals():
    """The root module's calls are "model" in the refusals of both Gram builders."""
    torch.manual_seed(29)
    lin = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, generator=_gen(29), dtype=F64)
    M = torch.eye(5, dtype=F64) + 0.5
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(lin, lambda: torch.log_softmax(M @ lin(x), -1)[:, 0], ["weight"])
    assert "': the output of model (call #0) influences other samples'" in str(exc.value)
    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram(lin, lambda: torch.log_softmax(lin(x), -1)[:4, 0], ["weight"])
    assert str(exc.value).startswith("model (call #0): its 5 output rows (leading shape (5,)) cannot be assigned")
    emb = torch.nn.Embedding(5, 3).double()
    t = torch.randint(0, 5, (2, 3), generator=_gen(30))

    def crosstalk():
        h = emb(t)
        return torch.log_softmax(h + 0.5 * h.mean(0, keepdim=True), -1)[..., 0]

    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(emb, crosstalk, ["weight"])
    assert str(exc.value).startswith(
        "per-token structured Gram hypotheses not met at model (call #0): windows interact"
    )
    # a frozen θ tensor (requires_grad False) used directly is seen too (θ is made to require
    # grad for the recorded forward)
    lin.weight.requires_grad_(False)
    try:
        with pytest.raises(HypothesesNotMet, match="is used 2 time"):
            ENG.structured_gram(
                lin,
                lambda: torch.log_softmax(lin(x) + torch.nn.functional.linear(x, lin.weight), -1)[:, 0],
                ["weight"],
            )
        assert not lin.weight.requires_grad
    finally:
        lin.weight.requires_grad_(True)


def test_gram_builder_per_token_interaction_only_the_random_combination_sees():
    """Windows that interact only at positions other than the verified target's: the sampled
    target passes and the random combination of all targets names the interaction."""
    m, T = 2, 3
    first = int(torch.randperm(m * T, generator=_gen(0))[0])
    t0 = first % T
    torch.manual_seed(31)
    emb = torch.nn.Embedding(5, 3).double()
    tok = torch.randint(0, 5, (m, T), generator=_gen(31))
    mask = torch.ones(1, T, 1, dtype=F64)
    mask[0, t0] = 0.0

    def logp():
        h = emb(tok)
        return torch.log_softmax(h + 0.5 * mask * h.flip(0), -1)[..., 0]

    with pytest.raises(HypothesesNotMet) as exc:
        ENG.structured_gram_per_token(emb, logp, ["weight"])
    assert "windows interact (autograd check on a random combination of all targets: error " in str(exc.value)


# --------------------------------------------------------------------------------------
# Devices, dtypes and random draws: every tensor follows the inputs, never torch's defaults
# --------------------------------------------------------------------------------------


class _PTZooOnDevice(_PTZoo):
    """The per-token zoo with its position indices made on the input's device (so that the model
    itself runs under any default device; the engines are what is under test)."""

    def forward(self, x):
        T = x.shape[-1]
        h = self.tok(x) + self.pos(torch.arange(T, device=x.device))
        u = torch.tanh(self.inp(h)) * self.hf(h)
        prefix = torch.cumsum(u, dim=-2) / torch.arange(1, T + 1, dtype=u.dtype, device=x.device)[:, None]
        z = torch.tanh(self.post(prefix)) + self.tok2(x)
        return self.head(z)


def _pt_zoo_on_device(m=2, T=4):
    lm, x, y = _pt_zoo_lm(_PTZooOnDevice, m, T)
    return lm, _next_token_logps(lm, x, y)[0]


def _same(a, b):
    """Equal results: tensors equal on the CPU (same dtype and shape), other fields equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.device.type == b.device.type == "cpu"
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _engine_cases():
    A, _ = _psd(9, 3)
    G = torch.randn(7, 11, generator=_gen(5), dtype=F64)
    zoo, zoo_logp, zoo_names, zoo_G = _gram_zoo(5)
    lm, lm_logp = _pt_zoo_on_device()
    net, net_logp, _ = _classifier()
    torch.manual_seed(12)
    pad = torch.nn.ModuleDict({"emb": torch.nn.Embedding(5, 3, padding_idx=1), "head": torch.nn.Linear(3, 4)}).double()
    tok = torch.tensor([1, 0, 3, 1, 4])  # one row per sample, two padding tokens

    def pad_logp():
        return torch.log_softmax(pad["head"](torch.tanh(pad["emb"](tok))), -1)[:, 0]

    return {
        "structured_gram-padding-one-row": lambda: ENG.structured_gram_details(
            pad, pad_logp, ["emb.weight", "head.weight"], check_rows=5
        ),
        "lanczos": lambda: ENG.lanczos(lambda v: A @ v, 9, device="cpu", tol=1e-12),
        "lanczos-float32": lambda: ENG.lanczos(lambda v: A.float() @ v, 9, dtype=torch.float32, device="cpu"),
        "gram_matrix": lambda: ENG.gram_matrix(G, block_size=3),
        "lambda_max-gram": lambda: ENG.lambda_max(G, method="gram", return_vector=True),
        "lambda_max-lanczos": lambda: ENG.lambda_max(G, method="lanczos", return_vector=True),
        "structured_gram": lambda: ENG.structured_gram_details(
            zoo, zoo_logp, zoo_names, check_rows=5, score_rows=lambda idx: zoo_G[idx]
        ),
        "structured_gram-never-called": lambda: ENG.structured_gram_details(zoo, zoo_logp, ["spare.weight"]),
        "lambda_max_structured-lanczos": lambda: ENG.lambda_max_structured(zoo, zoo_logp, zoo_names, dense_max=2),
        "per_token-auto": lambda: ENG.structured_gram_per_token(lm, lm_logp, _PT_NAMES, check_rows=8),
        "per_token-structured": lambda: ENG.structured_gram_per_token(lm, lm_logp, _PT_NAMES, path="structured"),
        "per_token-explicit": lambda: ENG.structured_gram_per_token(lm, lm_logp, _PT_NAMES, path="explicit"),
        "lambda_max_per_token-gram-lanczos": lambda: ENG.lambda_max_per_token(
            lm, lm_logp, _PT_NAMES, method="gram", dense_max=2
        ),
        "lambda_max_per_token-operator": lambda: ENG.lambda_max_per_token(lm, lm_logp, _PT_NAMES, method="lanczos"),
        "lambda_max_autodiff": lambda: ENG.lambda_max_autodiff(net, net_logp, NAMES),
    }


@pytest.mark.parametrize("route", ["default", "row-blocks"])
def test_engines_follow_their_inputs_device_not_torchs_default_device(route, monkeypatch):
    """With torch's default device set to another device than the inputs' (``torch.device("meta")``
    here; ``torch.set_default_device("cuda")`` with a CPU model in practice), every engine returns
    the same numbers on the inputs' device: each tensor it makes follows its inputs, and its
    seeded draws (the Lanczos start, the H2 checks' samples and combination, the flop-cost probe)
    are made on the CPU as documented. A tensor made on the default device instead mixes meta
    with CPU tensors (an error) or leaves a meta result."""
    if route == "row-blocks":  # the structured routes with row blocks of 7 entries
        monkeypatch.setattr(ENG, "_BLOCK_ENTRIES", 7)
        monkeypatch.setattr(ENG, "_use_explicit", lambda blocks, n: False)
    # fixed per-flop costs: the per-token routes (and the estimates in the structure lines) do not
    # depend on timings here; the probe itself runs under the meta default device below
    monkeypatch.setitem(ENG._FLOP_COST, (F64, "cpu"), {"structured": 1e-9, "explicit": 2e-9})
    for name, run in _engine_cases().items():
        want = run()
        with torch.device("meta"):
            got = run()
        assert _same(got, want), name
    monkeypatch.delitem(ENG._FLOP_COST, (F64, "cpu"))
    with torch.device("meta"):
        cost = ENG._measured_flop_costs(F64, "cpu")
    assert set(cost) == {"structured", "explicit"} and all(0 < v < math.inf for v in cost.values())


def test_cotangent_pruner_placeholder_follows_the_saved_tensors_device():
    """The NaN placeholder of a dropped saved tensor has its shape, dtype and device (the CPU
    here, under a meta default device)."""
    u = torch.zeros(3, dtype=F64, requires_grad=True)
    pruner = ENG._CotangentPruner(u)
    packed = pruner.pack(u * 2.0)
    with torch.device("meta"):
        out = ENG._CotangentPruner.unpack(packed)
    assert out.device.type == "cpu" and out.dtype == F64 and out.shape == (3,) and bool(torch.isnan(out).all())


def test_engines_leave_the_global_random_generator_alone(monkeypatch):
    """Every random draw of the engines comes from its own generator seeded by ``seed`` (the
    flop-cost probe's from seed 0): the global torch generator is neither read nor advanced."""
    cases = _engine_cases()
    for name, run in cases.items():
        ENG._FLOP_COST.clear()
        torch.manual_seed(123)
        want = torch.rand(4, dtype=F64)
        torch.manual_seed(123)
        run()
        assert torch.equal(torch.rand(4, dtype=F64), want), name


class _ProbeClock(torch.overrides.TorchFunctionMode):
    """A fake clock for the flop-cost probe: each einsum / matmul the probe runs takes the next
    duration of its schedule (on a simulated CUDA device only once ``torch.cuda.synchronize`` is
    called, as an asynchronous kernel launch); records the operands' shapes, dtypes and devices.
    A ``.to(device="cuda…")`` is redirected to the meta device (no GPU needed)."""

    def __init__(self, schedules, simulated_cuda=False):
        super().__init__()
        self.now, self.pending = 0.0, 0.0
        self.schedules = {k: list(v) for k, v in schedules.items()}
        self.ops, self.syncs, self.cuda = [], [], simulated_cuda

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.to and self.cuda and str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "meta"
        name = getattr(func, "__name__", "")
        kind = "structured" if name == "einsum" else "explicit" if name in ("__matmul__", "matmul") else None
        if kind is not None:
            ops = args[1:] if kind == "structured" else args
            self.ops.append((kind, tuple((tuple(t.shape), t.dtype, t.device.type) for t in ops)))
            step = self.schedules[kind].pop(0)
            if self.cuda:
                self.pending += step
            else:
                self.now += step
        return func(*args, **kwargs)

    def clock(self):
        return self.now

    def synchronize(self, device=None):
        self.syncs.append(device)
        self.now, self.pending = self.now + self.pending, 0.0


@pytest.mark.parametrize(("dtype", "device"), [(torch.float32, "cpu"), (F64, "meta"), (torch.float32, "cuda:1")])
def test_measured_flop_costs_times_the_documented_products(dtype, device, monkeypatch):
    """The probe against its documented method, with a fake clock: the structured product is the
    einsum of D (32, 2, 32, 32) and Y (2, 2, 32, 32), the explicit one Gc Gcᵀ of Gc (64, 2048),
    both in the requested dtype on the requested device; one untimed warm-up, then the best of
    three timed runs (durations 100, 7, 5, 6 | 1 here: best 5; a fourth run would give 1) over
    2·m²R²d = 262144 and 2·(mR)²·2048 = 16777216 flops. On CUDA every timed run waits with
    ``torch.cuda.synchronize(device)`` before the clock is read (the kernel's time is counted
    only there: without the wait the cost would be 0)."""
    import time

    cuda = device.startswith("cuda")
    mode = _ProbeClock({"structured": [100.0, 7.0, 5.0, 6.0, 1.0], "explicit": [50.0, 3.0, 4.0, 2.5, 0.5]}, cuda)
    monkeypatch.setattr(ENG, "_FLOP_COST", {})
    monkeypatch.setattr(time, "perf_counter", mode.clock)
    monkeypatch.setattr(torch.cuda, "synchronize", mode.synchronize)
    with mode:
        cost = ENG._measured_flop_costs(dtype, device)
    dev = "meta" if cuda else device
    assert cost == {"structured": 5.0 / 262144, "explicit": 2.5 / 16777216}
    assert (
        mode.ops
        == [("structured", (((32, 2, 32, 32), dtype, dev), ((2, 2, 32, 32), dtype, dev)))] * 4
        + [("explicit", (((64, 2048), dtype, dev), ((2048, 64), dtype, dev)))] * 4
    )
    assert mode.syncs == ([device] * 6 if cuda else [])
    assert ENG._FLOP_COST == {(dtype, device): cost}


def _lanczos_recorder(monkeypatch):
    """The real lanczos, its keyword options recorded."""
    calls = []
    real = ENG.lanczos

    def rec(matvec, dim, **kw):
        calls.append(kw)
        return real(matvec, dim, **kw)

    monkeypatch.setattr(ENG, "lanczos", rec)
    return calls


def test_lanczos_paths_of_the_gram_builders_get_device_tol_and_seed(monkeypatch):
    """Each Lanczos path runs on the device of its operator with the caller's ``tol`` and
    ``seed`` (where it has one) — not lanczos' own defaults (device "cpu", tol 1e-10, seed 0)."""
    calls = _lanczos_recorder(monkeypatch)
    monkeypatch.setitem(ENG._FLOP_COST, (F64, "cpu"), {"structured": 1e-9, "explicit": 2e-9})
    cpu = torch.device("cpu")
    lm, lm_logp = _pt_zoo_on_device()
    ENG.lambda_max_per_token(lm, lm_logp, _PT_NAMES, method="gram", dense_max=2, tol=1e-3, seed=5)
    ENG.lambda_max_per_token(lm, lm_logp, _PT_NAMES, method="lanczos", tol=1e-4, seed=6)
    zoo, zoo_logp, zoo_names, _ = _gram_zoo(5)
    ENG.lambda_max_structured(zoo, zoo_logp, zoo_names, dense_max=2, tol=1e-5)
    net, net_logp, _ = _classifier()
    ENG.lambda_max_autodiff(net, net_logp, NAMES, tol=1e-6, seed=7, max_iter=4)
    for kw in calls:
        assert isinstance(kw.get("device"), torch.device) and kw["device"] == cpu and kw["dtype"] == F64
    assert [kw["tol"] for kw in calls] == [1e-3, 1e-4, 1e-5, 1e-6]
    assert [kw.get("seed") for kw in calls] == [5, 6, None, 7] and calls[3]["max_iter"] == 4


def test_per_token_gram_method_records_the_auto_routes_and_the_dense_boundary(monkeypatch):
    """``lambda_max_per_token(method="gram")`` forms K with the routes ``path="auto"`` picks (here
    the structured contraction is the cheaper estimate wherever it applies) and records their
    structure lines; n ≤ dense_max (equality included) takes ``eigvalsh``: method
    "per-token-gram", also under ``method="auto"``."""
    monkeypatch.setitem(ENG._FLOP_COST, (F64, "cpu"), {"structured": 1e-12, "explicit": 1e-9})
    lm, lm_logp = _pt_zoo_on_device()
    n = 8
    sg = ENG.structured_gram_per_token(lm, lm_logp, _PT_NAMES, path="auto")
    assert any("; route structured (" in line for line in sg.structure)
    lam = float(np.linalg.eigvalsh(sg.K.numpy())[-1])
    for method in ("gram", "auto"):
        r = ENG.lambda_max_per_token(lm, lm_logp, _PT_NAMES, method=method, dense_max=n)
        assert r.method == "per-token-gram" and r.iterations == 0
        assert r.structure == sg.structure
        assert r.value == pytest.approx(lam, rel=1e-12)
    r = ENG.lambda_max_per_token(lm, lm_logp, _PT_NAMES, method="gram", dense_max=n - 1)
    assert r.method == "per-token-gram-lanczos" and r.structure == sg.structure


def test_per_token_default_check_rows_is_one(monkeypatch):
    """The documented default ``check_rows=1``: one sampled target (and the random combination)."""
    lm, lm_logp = _pt_zoo_on_device()
    sg = ENG.structured_gram_per_token(lm, lm_logp, _PT_NAMES)
    assert sg.checks.startswith("H2 (independent windows) verified with autograd on 1 sampled targets and ")
    seen = []
    real = ENG._record_per_token

    def rec(model, per_token_logp, param_names, lp0, check_rows, seed, target_chunk):
        seen.append((check_rows, seed, target_chunk))
        return real(model, per_token_logp, param_names, lp0, check_rows, seed, target_chunk)

    monkeypatch.setattr(ENG, "_record_per_token", rec)
    ENG.lambda_max_per_token(lm, lm_logp, _PT_NAMES)
    assert seen == [(1, 0, None)]


def test_lambda_max_lanczos_vector_of_the_smaller_operator_F():
    """With P < n Lanczos runs on F (P × P): the returned vector is F's top eigenvector itself
    (up to sign), not mapped through G as a K-vector would be."""
    G = torch.randn(9, 4, generator=_gen(21), dtype=F64)
    r = ENG.lambda_max(G, method="lanczos", return_vector=True, tol=1e-13)
    assert r.operator == "F" and r.vector.shape == (4,)
    w, V = np.linalg.eigh(G.numpy().T @ G.numpy() / 9)
    assert r.value == pytest.approx(w[-1], rel=1e-11)
    assert abs(abs(float(np.dot(r.vector.numpy(), V[:, -1]))) - 1) < 1e-9


def test_validate_refuses_integer_scores():
    with pytest.raises(InputError, match=r"^G must be a real floating tensor, got torch.int64$"):
        ENG.lambda_max(torch.ones(3, 2, dtype=torch.int64))


def _drifting_token_logp(lm, x, y, level, delta):
    """per_token_logp whose values are exactly ``level`` (the model's log-probabilities minus
    themselves, so the graph and the signals are the model's) on its first call — the caller's
    lp0 — and ``level + delta`` on every later one (the hooked forward): a planted gap."""
    calls = []

    def logp():
        lp = torch.log_softmax(lm(x), -1).gather(-1, y[..., None]).squeeze(-1)
        out = lp - lp.detach() + level
        calls.append(1)
        return out if len(calls) == 1 else out + delta

    return logp


@pytest.mark.parametrize(
    ("level", "delta_eps", "refused"),
    [
        (-2.0, 128, False),  # gap = 64·eps·max|lp0| exactly: not above
        (-2.0, 129, True),  # just above
        (-0.5, 64, False),  # max|lp0| < 1: the threshold is 64·eps·1
        (-0.5, 100, True),
        (-4.0, 256, False),  # the threshold scales with max|lp0| = 4
        (-4.0, 258, True),
    ],
)
def test_per_token_hooked_forward_gap_threshold_is_64_eps_max_lp0(level, delta_eps, refused):
    """The hooked forward must reproduce lp0 to 64·eps·max(1, max|lp0|) (documented refusal: "the
    hooked forward changed log p by …"); planted gaps exactly at, and one or two ulps above, that
    threshold (every value and difference here is exact in float64)."""
    lm, _, _ = _token_lm(2, 3)
    ctx = torch.randint(0, 7, (2, 4), generator=_gen(0))
    logp = _drifting_token_logp(lm, ctx[:, :-1], ctx[:, 1:], level, delta_eps * EPS)
    if refused:
        gap = f"{delta_eps * EPS:.3g}"
        with pytest.raises(HypothesesNotMet, match=rf"^the hooked forward changed log p by {gap} "):
            ENG.structured_gram_per_token(lm, logp, ["emb.weight", "head.weight"])
    else:
        sg = ENG.structured_gram_per_token(lm, logp, ["emb.weight", "head.weight"])
        assert sg.K.shape == (6, 6) and bool(torch.isfinite(sg.K).all())


def _row_with_gram(n, target):
    """A score row (a, b) whose Gram entry fl(a² + b²)/n is exactly ``target`` in float64: a² exact
    (a has 20 significant bits) a little below n·target, b² the exact remainder to rounding."""
    t = n * target
    for k in range(64):
        a = (math.floor(math.sqrt(t) * 2**32) - k) / 2**32
        b = math.sqrt(t - a * a)
        row = torch.tensor([[a, b]], dtype=F64)
        if float((row @ row.T)[0, 0] / n) == target:
            return a, b
    raise AssertionError("no such row")


@pytest.mark.parametrize(("err", "refused"), [(1e-8, False), (1.5e-8, True)])
def test_gram_builder_score_rows_tolerance_is_1e8_of_max_K_or_absolute_for_K_zero(err, refused):
    """K[idx, idx] must equal the score rows' Gram to 1e-8·‖K‖_max, and to 1e-8 absolute when K
    is zero (a θ subset no recorded call reaches): a planted disagreement exactly at 1e-8 passes,
    one at 1.5e-8 is refused."""
    n = 8
    net, logp, _ = _classifier(n)
    a, b = _row_with_gram(n, err)

    def score_rows(idx):
        Gs = torch.zeros(len(idx), 4, dtype=F64)
        Gs[0, 0], Gs[0, 1] = a, b
        return Gs

    if refused:
        with pytest.raises(HypothesesNotMet, match=r"^structured Gram disagrees with the score rows by 1\.5e-08 "):
            ENG.structured_gram_details(net, logp, ["spare.weight"], check_rows=n, score_rows=score_rows)
    else:
        sg = ENG.structured_gram_details(net, logp, ["spare.weight"], check_rows=n, score_rows=score_rows)
        assert float(sg.K.abs().max()) == 0.0 and sg.checks.endswith(f"K[idx, idx] equals score_rows on {n} rows")


def test_per_token_signals_fallback_with_a_call_log_p_does_not_reach():
    """The one-target-at-a-time fallback (an op without a batching rule) with a recorded call
    whose output is discarded: that probe gets no signal (zero scores), the rest equals the loop."""
    m, T = 2, 3
    n = m * T
    torch.manual_seed(19)
    emb, head, extra = torch.nn.Embedding(5, 3).double(), torch.nn.Linear(3, 5).double(), torch.nn.Linear(3, 2)
    extra = extra.double()
    model = torch.nn.ModuleDict({"emb": emb, "head": head, "extra": extra})
    ctx = torch.randint(0, 5, (m, T + 1), generator=_gen(19))
    x, y = ctx[:, :-1], ctx[:, 1:]

    def logits(x):
        h = emb(x)
        extra(h)  # recorded, output discarded
        prefix = torch.cumsum(h, 1) / torch.arange(1, x.shape[1] + 1, dtype=F64)[:, None]
        return head(_NoVmapTanh.apply(prefix))

    logp, logp_of = _next_token_logps(logits, x, y)

    names = ("emb.weight", "extra.weight", "head.weight")
    G = _loop_G(logp_of, [emb.weight, extra.weight, head.weight], n)
    assert float(G[:, 15:21].abs().max()) == 0.0
    for chunk in (1, 2):
        sg = ENG.structured_gram_per_token(model, logp, names, check_rows=n, target_chunk=chunk)
        assert _close(sg.K, _gram_ref(G), n)


class _TwoScalesLM(torch.nn.Module):
    """Position-wise LM with two Linears whose signals differ by 2⁻³⁰ (the first one's output is
    scaled down before use): the H2 tolerance must be relative to each call's own signals."""

    def __init__(self, V=5, d=3):
        super().__init__()
        self.emb = torch.nn.Embedding(V, d)
        self.small = torch.nn.Linear(d, d)
        self.big = torch.nn.Linear(d, d)
        self.head = torch.nn.Linear(d, V)

    def forward(self, x):
        h = self.emb(x)
        h = torch.tanh(self.small(h) * 2.0**-30 + self.big(h))
        return self.head(torch.cumsum(h, dim=-2))


class _WeakCrosstalk(torch.nn.Module):
    """An Embedding and a head with the windows mixed by a tiny planted amount (1e-6 of the
    batch mean) before the head: a violation of H2, far above rounding at every scale."""

    def __init__(self, V=6, d=3):
        super().__init__()
        self.emb = torch.nn.Embedding(V, d)
        self.head = torch.nn.Linear(d, V)

    def forward(self, x):
        h = self.emb(x)
        return self.head(h + 1e-6 * h.mean(0, keepdim=True))


@pytest.mark.parametrize("power", [-40, 0, 40])
def test_h2_checks_are_relative_to_the_scale_of_the_signals(power):
    """The H2 tolerances scale with the signals (1024·eps·max|w|·max|δ| per call): with log p
    scaled by 2^power (exact), valid models still pass — K scales by 2^(2·power) exactly, also in
    a model whose calls' signals differ by 2⁻³⁰ — and a planted mixing of 1e-6 is refused at
    every scale, per sample and per token."""
    s = 2.0**power
    # per sample: the zoo (every layer kind), then a mixing of 1e-6 across samples
    zoo, zoo_logp, zoo_names, _ = _gram_zoo(5)
    K1 = ENG.structured_gram_details(zoo, zoo_logp, zoo_names, check_rows=5).K
    sg = ENG.structured_gram_details(zoo, lambda: s * zoo_logp(), zoo_names, check_rows=5)
    assert torch.equal(sg.K, K1 * s * s) and sg.checks.startswith("H2 verified with autograd on 5 sampled")
    M = torch.eye(5, dtype=F64) + 1e-6 * torch.ones(5, 5, dtype=F64)
    mix, mix_logp = _mix_model(M)
    with pytest.raises(HypothesesNotMet, match=r"influences other samples' log-probabilities"):
        ENG.structured_gram_details(mix, lambda: s * mix_logp(), ["lin.weight"], check_rows=5)
    # per token: the zoo, the two-scales model, then a crosstalk of 1e-6 across windows
    lm, lm_logp = _pt_zoo_on_device()
    P1 = ENG.structured_gram_per_token(lm, lm_logp, _PT_NAMES, check_rows=8, path="explicit").K
    sp = ENG.structured_gram_per_token(lm, lambda: s * lm_logp(), _PT_NAMES, check_rows=8, path="explicit")
    assert torch.equal(sp.K, P1 * s * s)
    two, _, x, y = _causal_lm(_TwoScalesLM, 23, 3, 4, 5)

    def two_logp():
        return s * torch.log_softmax(two(x), -1).gather(-1, y[..., None]).squeeze(-1)

    names = ["small.weight", "small.bias", "big.weight", "big.bias"]
    st = ENG.structured_gram_per_token(two, two_logp, names, check_rows=12, seed=3)
    assert st.checks.startswith("H2 (independent windows) verified with autograd on 12 sampled targets")
    weak, _, wx, wy = _causal_lm(_WeakCrosstalk, 24, 2, 3, 6)

    def weak_logp():
        return s * torch.log_softmax(weak(wx), -1).gather(-1, wy[..., None]).squeeze(-1)

    with pytest.raises(HypothesesNotMet, match=r"^per-token structured Gram hypotheses not met at emb \(call #0\)"):
        ENG.structured_gram_per_token(weak, weak_logp, ["emb.weight"], check_rows=6)


def test_autodiff_structure_lines_pruned_size_in_mib_and_dead_tensors():
    """The pruner's line gives the dropped saved tensors' size in MiB (2²⁰ bytes): for the 6-sample
    classifier every tensor of the graph is a few hundred bytes, so the figure is 0.0; the tensors
    log p does not reach are listed comma-separated."""
    net, logp, _ = _classifier()
    r = ENG.lambda_max_autodiff(net, logp, (*NAMES, "spare.weight", "spare.bias"), tol=1e-12)
    head, rest = r.structure[1].split(" saved tensor(s) depending on the cotangent (")
    assert head.startswith("first backward's graph: ") and int(head[len("first backward's graph: ") :]) >= 1
    assert rest == "0.0 MiB summed over the tensors) not kept (never read by G w)"
    assert r.structure[2] == "not reaching log p (zero scores): spare.weight, spare.bias"


def _rank_two_update(dim, beta, seed=0):
    """v ↦ (I + β(q pᵀ + p qᵀ)) v with q the documented Lanczos start of ``seed`` and p a unit
    vector orthogonal to it: the first Lanczos step has α ≈ 1 and β₀ ≈ β, the second finds the
    invariant subspace span(q, p) (eigenvalues 1 ± β, and 1)."""
    q = _start(dim, seed)
    p = torch.randn(dim, generator=_gen(seed + 100), dtype=F64)
    p = p - q * torch.dot(q, p)
    p = p / torch.linalg.vector_norm(p)

    def matvec(v):
        return v + beta * (q * torch.dot(p, v) + p * torch.dot(q, v))

    return matvec


@pytest.mark.parametrize(
    ("dim", "beta_eps", "iterations"),
    [
        (100, 100, 1),  # β₀ ≤ 16·eps·‖A‖~·√dim = 160 eps: breakdown (invariant subspace) at once
        (100, 165, 2),  # above 160 eps (below 170): a second step, which breaks down
        (9, 40, 1),  # dim 9: breakdown at 48 eps
    ],
)
def test_lanczos_breakdown_threshold_is_16_eps_sqrt_dim(dim, beta_eps, iterations):
    """The invariant-subspace test β ≤ 16·eps·‖A‖~·√dim (tol = 0, so only the 64·eps floor of the
    residual test competes; β₀ sits far from both thresholds — rounding moves it by ~1 eps)."""
    r = ENG.lanczos(_rank_two_update(dim, beta_eps * EPS), dim, tol=0.0)
    assert r.iterations == iterations and r.converged
    assert r.value == pytest.approx(1.0 + (beta_eps * EPS if iterations == 2 else 0.0), abs=4 * EPS)


def test_lanczos_tol_floor_is_64_eps():
    """tol below 64·eps(dtype) is raised to 64·eps: β₀ of about 70·eps·‖A‖~ (above the floor, above
    the breakdown level 48 eps of dim 9) does not stop the first step, 60·eps does — with tol 0
    and 1e-30 alike."""
    for beta_eps, iterations in ((70, 2), (60, 1)):
        for tol in (0.0, 1e-30):
            r = ENG.lanczos(_rank_two_update(9, beta_eps * EPS), 9, tol=tol)
            assert r.iterations == iterations and r.converged


def test_lanczos_spanning_the_whole_space_is_converged():
    """A matvec with float32 rounding, tol = 1e-15: Lanczos takes all dim steps, spans the space
    and reports converged, with the top eigenvalue of the float32 operator (the last step's β is
    at rounding level after the reorthogonalisation against a complete basis)."""
    A, _ = _psd(6, 4)
    A32 = A.float()

    def matvec(v):
        return (A32 @ v.float()).double()

    r = ENG.lanczos(matvec, 6, tol=1e-15)
    assert r.iterations == 6 and r.converged
    assert r.value == pytest.approx(_np_top(A32.double()), abs=1e-5)


def test_h2_refusals_are_the_same_under_another_default_device():
    """The H2 checks still check under a default device other than the inputs': a planted mixing
    across samples / windows is refused with the same message (the same sampled row flags it).
    Index tensors made on the (meta) default device would silently index nothing — sampled
    one-hot rows of zeros — and only the random combination would be left to see the mixing."""
    M = torch.eye(5, dtype=F64) + 1e-6 * torch.ones(5, 5, dtype=F64)
    mix, mix_logp = _mix_model(M)
    weak, _, wx, wy = _causal_lm(_WeakCrosstalk, 24, 2, 3, 6)
    weak_logp = _next_token_logps(weak, wx, wy)[0]

    runs = [
        lambda: ENG.structured_gram_details(mix, mix_logp, ["lin.weight"], check_rows=3),
        lambda: ENG.structured_gram_per_token(weak, weak_logp, ["emb.weight"], check_rows=3),
    ]
    for run in runs:
        with pytest.raises(HypothesesNotMet) as want:
            run()
        assert "autograd check on sample " in str(want.value) or "autograd check on target " in str(want.value)
        with torch.device("meta"), pytest.raises(HypothesesNotMet) as got:
            run()
        assert str(got.value) == str(want.value)


# --------------------------------------------------------------------------------------
# the H2 checks' weights and their tolerances at the threshold (exact arithmetic)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "check_rows", "seed", "dtype"), [(5, 2, 3, F64), (7, 10, 0, torch.float32), (1, 1, 4, F64), (6, 6, 2, F64)]
)
def test_h2_check_weights_are_the_documented_draw(n, check_rows, seed, dtype):
    """The H2 checks' weights as documented: a CPU generator seeded ``seed`` draws randperm(n),
    whose first min(check_rows, n) entries are the checked samples (one-hot rows, in that order),
    then a float64 standard Gaussian of n entries, rounded to ``dtype`` (the last row); the
    weights are moved to the requested device, the indices stay on the CPU."""
    gen = _gen(seed)
    perm = torch.randperm(n, generator=gen)
    gauss = torch.randn(n, generator=gen, dtype=F64)
    q = min(check_rows, n)
    idx, W = ENG._h2_check_weights(n, check_rows, seed, dtype, torch.device("cpu"))
    assert idx.dtype == torch.int64 and idx.device.type == "cpu" and torch.equal(idx, perm[:q])
    assert W.shape == (q + 1, n) and W.dtype == dtype and W.device.type == "cpu"
    assert torch.equal(W[:q], torch.eye(n, dtype=dtype)[perm[:q]])
    assert torch.equal(W[q], gauss.to(dtype))
    if dtype == F64:  # premise: a float32 draw, cast to float64, would be another vector
        gen32 = _gen(seed)
        torch.randperm(n, generator=gen32)
        assert not torch.equal(W[q], torch.randn(n, generator=gen32, dtype=torch.float32).to(F64))
    on_meta = ENG._h2_check_weights(n, check_rows, seed, dtype, torch.device("meta"))[1]
    assert on_meta.device.type == "meta" and on_meta.shape == (q + 1, n) and on_meta.dtype == dtype


def test_h2_checks_draw_their_weights_in_log_ps_dtype_and_device(monkeypatch):
    """Both H2 checks ask for their weights with (n, check_rows, seed) and log p's dtype and
    device (float64 and float32 models; n = m·T targets for the per-token check)."""
    seen = []
    draw = ENG._h2_check_weights

    def recording(*args):
        seen.append(args)
        return draw(*args)

    monkeypatch.setattr(ENG, "_h2_check_weights", recording)
    for dtype in (F64, torch.float32):
        mix, mix_logp = _mix_model(torch.eye(5, dtype=F64))
        mix = mix.to(dtype)
        x = torch.randn(5, 3, generator=_gen(3), dtype=F64).to(dtype)
        ENG.structured_gram_details(
            mix, lambda mix=mix, x=x: torch.log_softmax(mix(x), -1)[:, 0], ["lin.weight"], check_rows=2, seed=7
        )
        assert seen[-1] == (5, 2, 7, dtype, torch.device("cpu"))
        lm, _, tx, ty = _causal_lm(_DiagLM, 13, 2, 3, 5, dtype)
        ENG.structured_gram_per_token(lm, _next_token_logps(lm, tx, ty)[0], ["emb.weight"], check_rows=3, seed=5)
        assert seen[-1] == (6, 3, 5, dtype, torch.device("cpu"))


class _SwapMix(torch.nn.Module):
    """z = lin(x); log p = z[..., 0] + c·(z with its first axis reversed)[..., 1]: each sample
    (each window, per token) also reads the other one's second output, weighted c, in a column
    where its own signal is zero. With c·1 exact every VJP error of a one-hot check is exactly c;
    an optional Linear ``dead`` is called first and its output discarded."""

    def __init__(self, c, dead=False):
        super().__init__()
        self.dead = torch.nn.Linear(3, 2) if dead else None
        self.lin = torch.nn.Linear(3, 2)
        self.c = c

    def forward(self, x):
        if self.dead is not None:
            self.dead(x)
        z = self.lin(x)
        return z[..., 0] + self.c * z.flip(0)[..., 1] - 4.0


def _swap_mix(c, shape, dead=False):
    torch.manual_seed(30)
    model = _SwapMix(c, dead).double()
    x = torch.randn(*shape, 3, generator=_gen(30), dtype=F64)
    return model, lambda: model(x)


def test_per_sample_h2_tolerance_is_1024_eps_max_w_max_delta_exactly():
    """The documented per-sample tolerance, at the threshold: 2 samples, each mixing the other's
    second output with weight c. Signals δ_r = (1, c) (max|δ| = 1); a one-hot check's largest
    entrywise error is exactly c; the random combination w (seed 2: same signs) errs by
    c·|w₀ − w₁| < c·max|w|. So c = 1024·eps passes (the inequality is strict: error = tolerance)
    and c = 1024.5·eps is refused at the first sampled sample; the random combination's own
    tolerance 1024·eps·max|w| (not divided by max|w|: |w₀ − w₁|·max|w| > 1 here) passes it."""
    gen = _gen(2)
    first = int(torch.randperm(2, generator=gen)[0])
    w = torch.randn(2, generator=gen, dtype=F64)
    assert float(w[0] * w[1]) > 0 and float((w[0] - w[1]).abs() * w.abs().max()) > 1  # premise of the seed
    at = _swap_mix(1024 * EPS, (2,))
    sg = ENG.structured_gram_details(*at, ["lin.weight", "lin.bias"], check_rows=2, seed=2)
    assert sg.checks.startswith("H2 verified with autograd on 2 sampled samples and one random combination")
    above = _swap_mix(1024.5 * EPS, (2,))
    with pytest.raises(HypothesesNotMet, match=rf"autograd check on sample {first}: error 2\.27e-13 > 2\.27e-13\)"):
        ENG.structured_gram_details(*above, ["lin.weight", "lin.bias"], check_rows=2, seed=2)


@pytest.mark.parametrize("dead", [False, True])
def test_per_token_h2_tolerance_is_1024_eps_t_max_w_max_delta_exactly(dead):
    """The documented per-token tolerance 1024·eps·T·max|w|·max|δ|, at the threshold: 2 windows
    of T = 2 positions, each target reading the other window's second output at its position,
    weighted c. The per-target signals are δ^{bt} = (1, c) at row t (max|δ| = 1); a one-hot
    check's largest entrywise error is exactly c, the random combination's (seed 2: w[0, t] and
    w[1, t] of the same sign) c·max_t|w[0, t] − w[1, t]| < c·max|w|. So c = 1024·T·eps passes
    (strict inequality; an error of 2-norm √2·c or a tolerance without T would refuse it) and
    c = 1024.5·T·eps is refused at the first sampled target (a 2-norm of the signals, √(m·T)
    times max|δ|, would pass it); max|w|·max|Δw| > 1, so the random combination's tolerance is
    not divided by max|w|. With a discarded call recorded first (no signals), the check goes on
    to the next call."""
    m, T = 2, 2
    gen = _gen(2)
    first = int(torch.randperm(m * T, generator=gen)[0])
    w = torch.randn(m * T, generator=gen, dtype=F64).reshape(m, T)
    dw = (w[0] - w[1]).abs().max()
    assert bool((w[0] * w[1] > 0).all()) and float(dw * w.abs().max()) > 1  # premise of the seed
    names = ["dead.weight", "lin.weight", "lin.bias"] if dead else ["lin.weight", "lin.bias"]
    at = _swap_mix(1024 * T * EPS, (m, T), dead)
    sg = ENG.structured_gram_per_token(*at, names, check_rows=m * T, seed=2)
    assert sg.checks.startswith("H2 (independent windows) verified with autograd on 4 sampled targets")
    above = _swap_mix(1024.5 * T * EPS, (m, T), dead)
    call = 1 if dead else 0
    with pytest.raises(
        HypothesesNotMet, match=rf"at lin \(call #{call}\): windows interact \(autograd check on target {first}: error"
    ):
        ENG.structured_gram_per_token(*above, names, check_rows=m * T, seed=2)


def test_autodiff_pruned_size_in_mib_is_that_of_the_saved_tensors_depending_on_the_cotangent():
    """The pruner's line counts the tensors the first backward saves that depend on the cotangent
    u and gives their size in MiB (2²⁰ bytes): against a reference that records every tensor
    autograd saves in that backward (a saved_tensors_hooks pair of its own) and asks autograd
    whether u reaches it (``autograd.grad(t.sum(), u)`` not None), on an MLP wide enough
    (64 samples × 2048 hidden units, float64) that the figure is above 1 MiB."""
    torch.manual_seed(33)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2048), torch.nn.Tanh(), torch.nn.Linear(2048, 3)).double().eval()
    x = torch.randn(64, 3, generator=_gen(33), dtype=F64)
    y = torch.arange(64) % 3

    def logp():
        return torch.log_softmax(net(x), -1).gather(-1, y[:, None]).squeeze(-1)

    names = ("0.weight", "0.bias", "2.weight", "2.bias")
    r = ENG.lambda_max_autodiff(net, logp, names, tol=1e-8)
    u = torch.zeros(64, dtype=F64, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.autograd.grad(logp(), _params(net, names), grad_outputs=u, create_graph=True, allow_unused=True)

    def depends(t):
        if t is u:
            return True
        return t.requires_grad and torch.autograd.grad(t.sum(), u, allow_unused=True, retain_graph=True)[0] is not None

    dropped = [t for t in saved if depends(t)]
    nbytes = sum(t.numel() * t.element_size() for t in dropped)
    assert nbytes > 2**20  # premise: the figure tells 2²⁰ from 2²¹ (or any other unit)
    assert r.structure[1] == (
        f"first backward's graph: {len(dropped)} saved tensor(s) depending on the cotangent "
        f"({nbytes / 2**20:.1f} MiB summed over the tensors) not kept (never read by G w)"
    )


# --------------------------------------------------------------------------------------
# substituted tensors: an exception inside a call, direct uses the graph walk must see
# --------------------------------------------------------------------------------------


class _OneLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.head = torch.nn.Linear(2, 2)

    def forward(self, x):
        return torch.log_softmax(self.head(torch.tanh(self.lin(x))), -1)[:, 0]


def _one_linear(seed=34):
    torch.manual_seed(seed)
    return _OneLinear().double(), torch.randn(4, 3, generator=_gen(seed), dtype=F64)


def _raise_inside(module, args, out):
    raise RuntimeError("raised inside the call")


def test_an_exception_inside_a_substituted_call_leaves_the_module_its_own_tensors():
    """A call that raises after the engine put its leaf copy of a substituted tensor in place:
    the exception propagates and every module holds what it held before the call — its own
    Parameter after ``functional_call`` with detached copies (which puts it back itself; the
    engine used to overwrite it with the detached copy), the forward's own substitute when the
    forward swapped it in by hand and never got to take it out."""
    net, x = _one_linear()
    own = dict(net.named_parameters())
    detached = {k: v.detach() for k, v in own.items()}
    hook = net.lin.register_forward_hook(_raise_inside)  # runs inside the call, before the engine's hook
    try:
        with pytest.raises(RuntimeError, match="^raised inside the call$"):
            ENG.structured_gram_details(
                net, lambda: torch.func.functional_call(net, detached, (x,)), ["lin.weight", "lin.bias"]
            )
        assert net.lin._parameters["weight"] is own["lin.weight"] and net.lin._parameters["bias"] is own["lin.bias"]
        sub = torch.nn.Parameter(own["lin.weight"].detach().clone())

        def by_hand():
            net.lin._parameters["weight"] = sub
            out = net(x)
            net.lin._parameters["weight"] = own["lin.weight"]
            return out

        with pytest.raises(RuntimeError, match="^raised inside the call$"):
            ENG.structured_gram_details(net, by_hand, ["lin.weight"])
        assert net.lin._parameters["weight"] is sub and net.lin._parameters["bias"] is own["lin.bias"]
    finally:
        hook.remove()
        net.lin._parameters["weight"] = own["lin.weight"]
    assert all(p.requires_grad for p in net.parameters())


def test_direct_uses_the_graph_walk_must_see_are_refused_with_the_counts():
    """H1 on the autograd graph, in the corners of the walk: a forward hook of the module that
    reads the leaf copy of a detached substitute during the call (named by the call's module and
    role); a direct use reached only after a None among an op's next functions (a constant first
    operand), or only after the walk met a node a second time (a shared subexpression); a call
    whose output is discarded plus a direct use (the discarded call is no use of log p); a
    substitute that requires grad used outside the calls (named by its θ name)."""
    want = "is used {} time(s) in the graph of log p but only {} use(s) are calls of a supported module"
    net, x = _one_linear()
    detached = {k: v.detach() for k, v in net.named_parameters()}
    hook = net.lin.register_forward_hook(lambda m, args, out: out + 0.0 * m.weight.sum())
    try:
        with pytest.raises(HypothesesNotMet, match="^'lin.weight' " + re.escape(want.format(2, 1))):
            ENG.structured_gram_details(net, lambda: torch.func.functional_call(net, detached, (x,)), ["lin.weight"])
    finally:
        hook.remove()
    half = torch.tensor(0.5, dtype=F64)
    with pytest.raises(HypothesesNotMet, match="^'lin.weight' " + re.escape(want.format(2, 1))):
        ENG.structured_gram_details(net, lambda: net(x) + torch.mul(half, net.lin.weight.sum()), ["lin.weight"])

    def direct_use_explored_after_a_shared_node():
        out = net(x)  # reached twice by the walk (out + out) before the direct use
        return torch.mul(half, net.lin.weight.sum()) + (out + out) / 2

    with pytest.raises(HypothesesNotMet, match="^'lin.weight' " + re.escape(want.format(2, 1))):
        ENG.structured_gram_details(net, direct_use_explored_after_a_shared_node, ["lin.weight"])

    def discarded_then_direct():
        net.lin(x)
        h = torch.tanh(torch.nn.functional.linear(x, net.lin.weight, net.lin.bias))
        return torch.log_softmax(net.head(h), -1)[:, 0]

    with pytest.raises(HypothesesNotMet, match="^'lin.weight' " + re.escape(want.format(1, 0))):
        ENG.structured_gram_details(net, discarded_then_direct, ["lin.weight"])
    subs = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    with pytest.raises(HypothesesNotMet, match="^'lin.weight' " + re.escape(want.format(1, 0))):
        ENG.structured_gram_details(
            net, lambda: torch.func.functional_call(net, subs, (x,)) + 0.0 * subs["lin.weight"].sum(), ["lin.weight"]
        )


@pytest.mark.parametrize("kind", ["linear", "hf_conv1d"])
def test_float32_layers_scored_in_float64_give_the_float64_gram_of_their_factors(kind):
    """Float32 layers, log p cast to float64: K is the float64 Gram of the float32 factors (the
    documented accuracy), i.e. K_ref = G Gᵀ/n with the per-sample gradients of the closed form
    (δ_i ⊗ a_i for a Linear's weight (out, in), a_i ⊗ δ_i for a transformers Conv1D's (in, out),
    δ_i for the bias) built in float64 from the float32 inputs a_i and the float32 output signals
    δ_i = ∂ log p_i / ∂z_i (one autograd backward per sample), to 256·eps·n·‖K_ref‖ of float64 —
    far below the float32 rounding (~1e-7) of a Gram formed in the layers' dtype."""
    n = 6
    torch.manual_seed(35)
    layer = torch.nn.Linear(5, 4) if kind == "linear" else _hf_conv1d(4, 5)
    x32 = torch.randn(n, 5, generator=_gen(35))

    def logp():
        return torch.log_softmax(layer(x32), -1)[:, 0].double()

    z = layer(x32)
    lp = torch.log_softmax(z, -1)[:, 0].double()
    deltas = torch.stack([torch.autograd.grad(lp[i], z, retain_graph=True)[0][i] for i in range(n)])
    assert deltas.dtype == torch.float32 and z.dtype == torch.float32
    d64, a64 = deltas.double(), x32.double()
    outer = d64[:, :, None] * a64[:, None, :] if kind == "linear" else a64[:, :, None] * d64[:, None, :]
    G = torch.cat([outer.reshape(n, -1), d64], 1)
    K_ref = _gram_ref(G)
    sg = ENG.structured_gram_details(layer, logp, ["weight", "bias"], check_rows=n)
    assert sg.K.dtype == F64 and _close(sg.K, K_ref, n)
    K32 = _gram_ref(G.float().double())  # premise: a Gram of float32-rounded products is farther off
    assert not _close(K32, K_ref, n)


# --------------------------------------------------------------------------------------
# Lanczos' stopping rule on indefinite operators: ‖A‖~ is the running max of |θ|, |α_j|, β_j
# --------------------------------------------------------------------------------------


def _documented_lanczos_stop(A, tol, seed=0):
    """(iterations, θ) of the documented rule, in numpy float64: the seeded start, full
    reorthogonalisation (two passes), and the stop at the first step k with β_k ≤ 16·eps·‖A‖~·√dim
    (breakdown), β_k·|s_k| ≤ max(tol, 64·eps)·‖A‖~, or k + 1 = dim; ‖A‖~ = the largest of |θ_j|,
    |α_j|, β_j for j ≤ k. Returns also the smallest relative gap between a residual and its
    threshold over the steps (the margin of the case)."""
    from scipy.linalg import eigh_tridiagonal

    dim = A.shape[0]
    q = _start(dim, seed).numpy()
    Q, alphas, betas, scale, margin = np.zeros((dim, dim)), [], [], 0.0, math.inf
    for k in range(dim):
        Q[k] = q
        w = A @ q
        alphas.append(float(w @ q))
        w = w - alphas[-1] * q - (betas[-1] * Q[k - 1] if k else 0.0)
        for _ in range(2):
            w = w - Q[: k + 1].T @ (Q[: k + 1] @ w)
        beta = float(np.linalg.norm(w))
        if k == 0:
            theta, s_last = alphas[0], 1.0
        else:
            ev, sv = eigh_tridiagonal(np.array(alphas), np.array(betas), select="i", select_range=(k, k))
            theta, s_last = float(ev[-1]), float(sv[-1, 0])
        scale = max(scale, abs(theta), abs(alphas[-1]), beta)
        res, thr = beta * abs(s_last), max(tol, 64 * EPS) * scale
        margin = min(margin, abs(res - thr) / max(res, thr))
        if beta <= 16 * EPS * scale * math.sqrt(dim) or res <= thr or k + 1 == dim:
            return k + 1, theta, margin
        betas.append(beta)
        q = w / beta
    raise AssertionError("unreachable")


def _indefinite(case):
    rng = np.random.default_rng(case)
    dim = int(rng.integers(3, 6))
    ev = rng.normal(size=dim) * rng.choice([1, 10], size=dim)
    Qm, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    A = (Qm * ev) @ Qm.T
    return (A + A.T) / 2


@pytest.mark.parametrize(("case", "tol"), [(165, 0.3), (885, 0.03), (1423, 0.3)])
def test_lanczos_stops_where_the_documented_rule_does_on_indefinite_operators(case, tol):
    """Indefinite 3–5 dimensional operators with a loose tol, so that Lanczos stops before
    spanning the space: the step it stops at and its θ are those of the documented rule
    (‖A‖~ the running max of |θ|, |α_j| and β_j), computed in numpy; each case is far from the
    thresholds (relative margin > 0.1), and chosen so that leaving one of the four terms out of
    ‖A‖~ moves the stop (case 165: |θ|; 885: |α|; 1423: the running max, or β)."""
    A = _indefinite(case)
    iters, theta, margin = _documented_lanczos_stop(A, tol)
    assert margin > 0.1 and iters < A.shape[0]  # premise: a clear-cut early stop
    At = torch.from_numpy(A)
    r = ENG.lanczos(lambda v: At @ v, A.shape[0], tol=tol)
    assert r.iterations == iters and r.converged
    assert r.value == pytest.approx(theta, rel=1e-12, abs=1e-12)


def test_lanczos_tol_one_stops_at_the_first_step_and_the_comparison_is_inclusive():
    """With tol = 1 the documented test β₀·1 ≤ 1·‖A‖~ holds at the first step (‖A‖~ ≥ β₀): the
    run stops after one step with θ = α₀, also when β₀ > |α₀| (‖A‖~ = β₀ exactly, equality:
    the comparison is ≤), here A = [[0, 1], [1, 0]] and the seed-0 start."""
    q = _start(2, 0)
    alpha = float(2 * q[0] * q[1])
    assert alpha * alpha < 0.5  # premise: β₀ = √(1 − α₀²) > |α₀|
    A = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
    r = ENG.lanczos(lambda v: A @ v, 2, tol=1.0)
    assert r.iterations == 1 and r.converged
    assert r.value == pytest.approx(alpha, rel=1e-15, abs=1e-16)


class _CudaAsCpu(torch.overrides.TorchFunctionMode):
    """A simulated ``cuda:1`` for functions that take their device as an argument: every device
    "cuda…" asked of a factory function or of ``Tensor.to`` is recorded and served on the CPU."""

    def __init__(self):
        super().__init__()
        self.moves = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.to:
            self.moves.append(kwargs.get("device", args[1] if len(args) > 1 else None))
            if len(args) > 1 and str(args[1]).startswith("cuda"):  # t.to(device)
                args = (args[0], "cpu", *args[2:])
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def test_lanczos_moves_its_cpu_drawn_start_to_the_requested_device():
    """The start vector is drawn on the CPU and moved to ``device`` (here a simulated cuda:1: the
    move is recorded and served on the CPU) before the first product: the operator receives the
    documented start, asked for on cuda:1; the result is that of the plain CPU run."""
    A = _psd(6, 3)[0]
    seen = []

    def matvec(v):
        seen.append(v.clone())
        return A @ v

    plain = ENG.lanczos(matvec, 6, tol=1e-12)
    seen.clear()
    mode = _CudaAsCpu()
    with mode:
        r = ENG.lanczos(matvec, 6, tol=1e-12, device="cuda:1")
    assert mode.moves[0] == "cuda:1" and torch.equal(seen[0], _start(6))
    assert r.value == plain.value and r.iterations == plain.iterations


def test_row_block_grams_move_their_segment_ids_to_the_requested_device():
    """The row-block Grams (structured and explicit) of a parameter used by two calls, one with
    two rows per sample (segment ids made on the CPU): every tensor they move goes to the
    requested device (a simulated cuda:1 served on the CPU), and K is the dense G Gᵀ."""
    g = _gen(36)
    n = 3
    u1, v1 = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    u2, v2 = torch.randn(3, 3, generator=g, dtype=F64), torch.randn(3, 2, generator=g, dtype=F64)
    s1 = torch.tensor([0, 0, 1, 1, 2, 2])
    Gp = torch.zeros(n, 6, dtype=F64).index_add_(0, s1, (u1[:, :, None] * v1[:, None, :]).reshape(6, 6))
    Gp += (u2[:, :, None] * v2[:, None, :]).reshape(3, 6)
    K_ref = (Gp @ Gp.T).numpy()
    for blocks in ([(s1, u1, v1), (None, u2, v2)], [(None, u2, v2), (s1, u1, v1)]):
        for gram in (
            lambda b: ENG._entry_gram_structured(b, n, F64, "cuda:1", {}),
            lambda b: ENG._entry_gram_explicit(b, n, F64, "cuda:1"),
        ):
            mode = _CudaAsCpu()
            with mode:
                K = gram(blocks)
            assert mode.moves and all(d == "cuda:1" for d in mode.moves), mode.moves
            assert _close(K, K_ref, n)


class _OperandRecorder(torch.overrides.TorchFunctionMode):
    """Records the operands of every einsum and matmul run under it (clones)."""

    def __init__(self):
        super().__init__()
        self.operands = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name == "einsum":
            self.operands.append(tuple(t.clone() for t in args[1:]))
        elif name in ("__matmul__", "matmul"):
            self.operands.append(tuple(t.clone() for t in args))
        return func(*args, **(kwargs or {}))


def test_measured_flop_costs_operands_are_the_documented_draws(monkeypatch):
    """The probe's operands are those its docstring states: float64 Gaussians D (32, 2, 32, 32),
    Y (2, 2, 32, 32) and Gc (64, 2048), drawn in that order from a CPU generator seeded 0, then
    cast to the requested dtype (float64 here, so a float32 draw would show); the explicit product
    is Gc Gcᵀ."""
    gen = _gen(0)
    D = torch.randn(32, 2, 32, 32, generator=gen, dtype=F64)
    Y = torch.randn(2, 2, 32, 32, generator=gen, dtype=F64)
    Gc = torch.randn(64, 2048, generator=gen, dtype=F64)
    gen32 = _gen(0)  # premise: float32 draws are other numbers in float64
    assert not torch.equal(torch.randn(32, 2, 32, 32, generator=gen32, dtype=torch.float32).double(), D)
    monkeypatch.setattr(ENG, "_FLOP_COST", {})
    mode = _OperandRecorder()
    with mode:
        ENG._measured_flop_costs(F64, "cpu")
    assert len(mode.operands) == 8
    for ops in mode.operands[:4]:
        assert torch.equal(ops[0], D) and torch.equal(ops[1], Y)
    for ops in mode.operands[4:]:
        assert torch.equal(ops[0], Gc) and torch.equal(ops[1], Gc.T)


@pytest.mark.parametrize("dim", [1, 3])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_lanczos_refuses_an_operator_that_returns_nan_or_inf(dim, bad):
    """An operator whose A v has a NaN or inf entry is bad input: lanczos raises InputError naming
    it (it returned a NaN or inf "converged" value, or scipy's "array must not contain infs or
    NaNs", before), also when only one entry is bad."""

    def matvec(v):
        w = v.clone()
        w[-1] = bad
        return w

    with pytest.raises(InputError, match=r"^the operator returned a non-finite vector at Lanczos step 0 \(α = "):
        ENG.lanczos(matvec, dim)
    with pytest.raises(InputError, match=r"non-finite vector at Lanczos step 0"):
        ENG.lanczos(lambda v: v * bad, dim)


def test_lanczos_refuses_an_operator_whose_output_norm_overflows():
    """A finite operator of norm ~1e160: ‖A q − α q‖ overflows float64 (β = inf) while α is
    finite. lanczos refuses it (before, β = inf passed its breakdown test and α₀ came back as a
    converged λ_max after one step)."""
    A = torch.tensor([[1.0, 2.0, 0.0], [2.0, -1.0, 1.0], [0.0, 1.0, 3.0]], dtype=F64) * 1e160
    q = _start(3)
    assert math.isfinite(float(q @ A @ q))  # premise: α₀ is finite, only β₀ overflows
    with pytest.raises(InputError, match=r"at Lanczos step 0 \(α = [0-9.e+]+, β = inf\): NaN or inf in A v, or a norm"):
        ENG.lanczos(lambda v: A @ v, 3)
