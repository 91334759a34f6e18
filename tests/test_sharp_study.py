"""torch_checks.sharp_study against independent references on small cases.

- the reduced-pair statistics (a2, η, ‖P⊥Ev‖) against dense P × P float64 matrices and an
  explicit eigendecomposition written here, and the 2 × 2 closed form at 60 digits;
- the critical scales against their defining inequalities (bisection at 60 digits);
- the AB grid against :func:`fimtheory.approx.two_sided` and the dense eigvalsh of F = GᵀG/n,
  the cheapest (k, q) against a brute-force scan with a cost counted here;
- the command: bad input exits 2 before any work, progress lines on a non-terminal stderr.
"""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fimtheory import approx  # noqa: E402
from fimtheory.cli import main  # noqa: E402
from fimtheory.errors import InputError  # noqa: E402
from fimtheory.highprec import working_precision  # noqa: E402
from torch_checks import sharp_study as S  # noqa: E402
from torch_checks.checks import reduced_pair  # noqa: E402

K = 4 / (3 * np.sqrt(3))


def _scores(n, P, seed, rank=None):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, P))
    if rank is not None:
        G = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, P))
    G[0] *= 3.0  # a clear top direction
    return G


def _dense_stats(G, Gq):
    """a2, η, ‖P⊥Ev‖² from the dense P × P F and E (eigendecomposition here)."""
    n = G.shape[0]
    F = G.T @ G / n
    E = Gq.T @ Gq / n - F
    w, V = np.linalg.eigh(F)
    w, V = w[::-1], V[:, ::-1]
    v = V[:, 0]
    Ev = E @ v
    a2 = sum((V[:, j] @ Ev) ** 2 / (w[0] - w[j]) for j in range(1, F.shape[0]))
    r = Ev - v * (v @ Ev)
    eta = np.max(np.abs(np.linalg.eigvalsh(E)))
    return a2, eta, r @ r, w[0] - w[1], np.linalg.eigvalsh(F + E)[-1], np.linalg.eigvalsh(F - E)[-1], w[0]


@pytest.mark.parametrize("n, P, seed", [(4, 12, 0), (5, 30, 1), (6, 9, 2)])
def test_reduced_pair_statistics_equal_the_dense_ones(n, P, seed):
    G = _scores(n, P, seed)
    Gq = G + 0.05 * np.random.default_rng(seed + 10).standard_normal(G.shape)
    Fr, Er = reduced_pair(torch.tensor(G), torch.tensor(Gq))
    st = S.draw_stats(Fr, Er)
    a2, eta, w2, gap, top_p, top_m, lam = _dense_stats(G, Gq)
    scale = np.linalg.norm(G, 2) ** 2 / n
    assert st.a2 == pytest.approx(a2, rel=1e-8)
    assert st.eta == pytest.approx(eta, rel=1e-10)
    assert st.w2 == pytest.approx(w2, rel=1e-8)
    elev = S.mean_elevation([(Fr, Er)], 1.0)
    assert elev == pytest.approx(0.5 * (top_p + top_m) - lam, abs=1e-12 * scale)


def test_draw_stats_on_the_two_by_two_closed_form():
    """F = diag(γ, 0), E = η[[c, s], [s, −c]]: a2 = η²s²/γ, ‖P⊥Ev‖² = η²s², ‖E‖ = η."""
    gap, eta, c = 0.7, 0.1, 0.3
    s = np.sqrt(1 - c * c)
    st = S.draw_stats(np.diag([gap, 0.0]), eta * np.array([[c, s], [s, -c]]))
    with working_precision(60):
        ref_a2 = mpmath.mpf(eta) ** 2 * (1 - mpmath.mpf(c) ** 2) / mpmath.mpf(gap)
    assert st.a2 == pytest.approx(float(ref_a2), rel=1e-13)
    assert st.w2 == pytest.approx(eta**2 * s**2, rel=1e-13)
    assert st.eta == pytest.approx(eta, rel=1e-14)


def _bisect(f, hi):
    with working_precision(60):
        lo, hi = mpmath.mpf(0), mpmath.mpf(hi)
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        return float(lo)


def test_critical_scales_are_the_roots_of_their_bounds():
    stats = [S.DrawStats(0.02, 0.3, 0.05), S.DrawStats(0.01, 0.1, 0.008)]
    gap = 1.0
    rep = S.critical_scales(gap, stats)
    ea2 = np.mean([x.a2 for x in stats])
    e3 = np.mean([x.eta**3 for x in stats])
    e4 = np.mean([x.eta**4 for x in stats])
    w4 = np.mean([x.w2**2 for x in stats])
    eb = max(x.eta for x in stats)
    k = mpmath.mpf(4) / (3 * mpmath.sqrt(3))
    old = _bisect(lambda s: ea2 - 4 * s * e3 / (gap * (gap - 2 * s * eb)), gap / (2 * eb))
    s3 = _bisect(lambda s: ea2 - s * k * e3 / gap**2 - 8 * s * s * e4 / (gap**2 * (gap - 2 * s * eb)), gap / (2 * eb))
    sharp = _bisect(lambda s: ea2 - s * k * e3 / gap**2 - s * s * w4 / gap**3, 1e6)
    assert rep["s_c"]["old"] == pytest.approx(old, rel=1e-12)
    assert rep["s_c"]["s3"] == pytest.approx(s3, rel=1e-10)
    assert rep["s_c"]["sharp"] == pytest.approx(sharp, rel=1e-12)
    assert rep["s_c"]["sharp"] > rep["s_c"]["s3"] > rep["s_c"]["old"]


def test_not_generic_is_refused():
    with pytest.raises(InputError, match="E\\[a2\\] > 0"):
        S.critical_scales(1.0, [S.DrawStats(0.0, 0.1, 0.0)])


def test_ensemble_report_elevation_is_positive_inside_the_region():
    G = _scores(5, 20, 4)
    pairs = []
    for k in range(3):
        Gq = G + 0.3 * np.random.default_rng(100 + k).standard_normal(G.shape)
        pairs.append(reduced_pair(torch.tensor(G), torch.tensor(Gq)))
    rep = S.ensemble_report(pairs)
    chk = rep["check_at_0.9_sc_sharp"]
    assert chk["positive"] and chk["mean_elevation"] >= chk["lower_bound"] > 0
    assert rep["ratio_sharp_over_old"] > 1
    # the dense reference of the elevation at that s
    n = G.shape[0]
    F = G.T @ G / n
    s = chk["s"]
    tops = []
    for k in range(3):
        Gq = G + 0.3 * np.random.default_rng(100 + k).standard_normal(G.shape)
        E = Gq.T @ Gq / n - F
        tops += [np.linalg.eigvalsh(F + s * E)[-1], np.linalg.eigvalsh(F - s * E)[-1]]
    assert chk["mean_elevation"] == pytest.approx(np.mean(tops) - np.linalg.eigvalsh(F)[-1], rel=1e-8)


@pytest.mark.parametrize("n, P, rank", [(8, 30, None), (12, 7, None), (10, 40, 3)])
def test_ab_grid_equals_two_sided_and_brackets_the_dense_lambda(n, P, rank):
    G = _scores(n, P, n + P, rank)
    steps, powers = (1, 2, 3, 5), (1, 2, 4, 8, 32)
    grid = S.ab_grid(G, steps=steps, powers=powers)
    lam = np.linalg.eigvalsh(G.T @ G / n)[-1]  # dense P × P reference
    assert grid["lambda_max"] == pytest.approx(lam, rel=1e-12)
    for k in steps:
        for q in powers:
            lo, up = grid["table"][(k, q)]
            tb = approx.two_sided(G, lanczos_steps=k, q=q)
            assert lo == pytest.approx(tb.lower, rel=1e-12) and up == pytest.approx(tb.upper, rel=1e-12)
            assert lo <= lam * (1 + 1e-12) and up >= lam * (1 - 1e-12)


def _products_of_repeated_squaring(q):
    """Count the products of the loop in approx._trace_power_root, simulated here."""
    count, result, e = 0, None, q
    while e:
        if e & 1:
            count += result is not None
            result = 1
        e >>= 1
        if e:
            count += 1
    return count


@pytest.mark.parametrize("q", [1, 2, 3, 4, 5, 8, 12, 31, 32, 64, 100, 1024])
def test_matmul_count(q):
    assert S.matmul_count(q) == _products_of_repeated_squaring(q)


def test_cheapest_is_the_least_cost_pair_meeting_the_target():
    G = _scores(30, 60, 7)
    grid = S.ab_grid(G, steps=(1, 2, 4, 8), powers=(1, 2, 4, 8, 16, 32, 64))
    best = S.cheapest(grid, 1.01)
    assert best is not None
    n = 30
    cost = {kq: 2 * n * n * kq[0] + 2 * n**3 * _products_of_repeated_squaring(kq[1]) for kq in grid["table"]}
    meeting = [kq for kq, (lo, up) in grid["table"].items() if up / lo <= 1.01]
    assert best in meeting
    assert cost[best] == min(cost[kq] for kq in meeting)
    rep = S.ab_report(G, steps=(1, 2, 4, 8), powers=(1, 2, 4, 8, 16, 32, 64))
    assert rep["cheapest"]["U_over_L"] <= 1.01
    assert rep["cheapest"]["L_over_lambda"] <= 1 + 1e-12 <= rep["cheapest"]["U_over_lambda"] + 2e-12


def test_ab_grid_refuses_bad_input():
    with pytest.raises(InputError, match="finite"):
        S.ab_grid(np.array([[1.0, np.nan]]))
    with pytest.raises(InputError, match="non-empty"):
        S.ab_grid(np.ones((2, 3)), steps=())


def test_cli_refuses_unknown_model_and_unwritable_output(capsys, tmp_path):
    assert main(["sharp-study", "sc", "--model", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's output-file check, before any work
        main(["sharp-study", "ab", "--model", "logistic", "--json", str(tmp_path / "no" / "x.json")])
    assert exc.value.code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_sc_on_the_logistic_model_writes_json_and_progress(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(S.SC_SCHEMES, "logistic", ("rtn-int{b}-sym-channel",))
    out = tmp_path / "sc.json"
    assert main(["sharp-study", "sc", "--model", "logistic", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sharp-study sc [" in err and "logistic: base scores" in err  # stderr is not a terminal here
    doc = json.loads(out.read_text())
    row = doc["models"]["logistic"]["schemes"]["rtn-int4-sym-channel"]
    assert row["status"] == "measured" and row["ratio_sharp_over_old"] > 1
    assert row["check_at_0.9_sc_sharp"]["positive"]
