"""torch_checks.distributed: the Gram matrix all-reduced over gloo processes on the CPU equals the
dense float64 Gram of the whole score matrix, itself built from one autograd call per sample
(an independent reference), to ≤ 1e-12 relative; λ_max agrees; errors reach every rank."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from fimtheory.errors import InputError, UnknownIdError
from torch_checks import distributed as D
from torch_checks.models import ByteLM, ByteLMConfig, DigitsMLP
from torch_checks.scores import per_sample_scores_loop

dist = pytest.importorskip("torch.distributed")
GLOO = dist.is_available() and dist.is_gloo_available()
needs_gloo = pytest.mark.skipif(not GLOO, reason="torch.distributed with the gloo backend is not available")

F64 = torch.float64
REL = 1e-12
T = 12  # scored positions per trajectory


def tiny_lm(seed: int = 0) -> ByteLM:
    torch.manual_seed(seed)
    return ByteLM(ByteLMConfig.tiny()).to(F64).eval()


def lm_data(seed: int = 0, m: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (m, T + 1), generator=torch.Generator().manual_seed(seed))


def digits(seed: int = 0, n: int = 24):
    torch.manual_seed(seed)
    model = DigitsMLP(hidden=8).to(F64).eval()
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(n, 64, generator=g, dtype=F64)
    y = torch.randint(0, 10, (n,), generator=g)
    return model, X, y


@functools.cache
def lm_reference() -> torch.Tensor:
    """The reference Gram of :func:`tiny_lm` on :func:`lm_data`, every parameter (computed once)."""
    model = tiny_lm()
    return reference_gram(model, tuple(n for n, _ in model.named_parameters()), lm_data(), "lm")


def reference_gram(model, names, data, kind) -> torch.Tensor:
    """K = GGᵀ/n with G from one torch.autograd.grad call per sample (dense float64)."""
    if kind == "lm":
        G = torch.cat([per_sample_scores_loop(model, names, t[:-1], t[1:], per_token=True).G for t in data])
    else:
        G = per_sample_scores_loop(model, names, data[0], data[1]).G
    return G @ G.T / G.shape[0]


def rel_diff(A, B) -> float:
    return float(torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B))


# ------------------------------------------------------------------------- sharding plans


def test_partition_is_deterministic_balanced_and_complete():
    sizes = [("a", 10), ("b", 7), ("c", 7), ("d", 3), ("e", 1)]
    plan = D.partition_parameters(sizes, 2)
    assert plan == D.partition_parameters(list(sizes), 2)
    assert sorted(n for s in plan for n in s) == ["a", "b", "c", "d", "e"]
    loads = [sum(dict(sizes)[n] for n in s) for s in plan]
    assert loads == [14, 14]  # LPT: a→0, b→1, c→1, d→0, e→0
    assert plan == (("a", "d", "e"), ("b", "c"))
    assert D.partition_parameters([("a", 4)], 3) == (("a",), (), ())  # empty shards allowed
    with pytest.raises(InputError):
        D.partition_parameters(sizes, 0)


@pytest.mark.parametrize(
    "sizes, width, limit",
    [([("a", 5), ("b", 3), ("c", 4)], 4, 6), ([("a", 5), ("b", 3), ("c", 4)], 100, 8), ([("a", 9)], 2, 9)],
)
def test_column_chunks_cover_every_column_once_within_bounds(sizes, width, limit):
    chunks = D._column_chunks(sizes, width, limit)
    seen = {n: [] for n, _ in sizes}
    for ch in chunks:
        assert sum(hi - lo for _, lo, hi in ch) <= width
        assert sum(dict(sizes)[n] for n in dict.fromkeys(n for n, _, _ in ch)) <= limit
        for n, lo, hi in ch:
            seen[n].extend(range(lo, hi))
    assert all(seen[n] == list(range(s)) for n, s in sizes)


# ------------------------------------------------------------------------- one process


@pytest.mark.parametrize("budget", [D.DEFAULT_BUDGET_BYTES, 8 * 2 * T * 8192])
def test_world_size_one_lm_equals_autograd_reference(budget):
    model, data = tiny_lm(), lm_data()
    names = tuple(n for n, _ in model.named_parameters())
    g = D.distributed_gram(model, names, data, kind="lm", budget_bytes=budget)
    ref = lm_reference()
    assert g.world_size == 1 and g.n == 2 * T and g.P == sum(p.numel() for p in model.parameters())
    assert rel_diff(g.K, ref) <= REL
    if budget < D.DEFAULT_BUDGET_BYTES:  # several passes, tensors split into column slices
        assert g.timings[0]["passes"] >= 4
        assert g.timings[0]["peak_score_bytes"] <= 2 * budget
    lam = D.lambda_max_from_gram(g).value
    lam_ref = float(torch.linalg.eigvalsh(ref)[-1])
    assert abs(lam - lam_ref) <= REL * lam_ref


def test_world_size_one_classifier_equals_autograd_reference():
    model, X, y = digits()
    names = tuple(n for n, _ in model.named_parameters())
    budget = 8 * 24 * 200  # columns in chunks of 200, samples in blocks of 9
    res = D.lambda_max_distributed(model, names, (X, y), kind="classifier", budget_bytes=budget)
    ref = reference_gram(model, names, (X, y), "classifier")
    g = D.distributed_gram(model, names, (X, y), kind="classifier", budget_bytes=budget)
    assert g.timings[0]["passes"] == 4
    assert rel_diff(g.K, ref) <= REL
    lam_ref = float(torch.linalg.eigvalsh(ref)[-1])
    assert res.method == "distributed-gram" and abs(res.value - lam_ref) <= REL * lam_ref


def test_bad_input_is_refused():
    model, data = tiny_lm(), lm_data()
    names = model.default_param_names()
    with pytest.raises(UnknownIdError):
        D.distributed_gram(model, ["nope"], data, kind="lm")
    with pytest.raises(InputError, match="empty"):
        D.distributed_gram(model, [], data, kind="lm")
    with pytest.raises(InputError, match="kind"):
        D.distributed_gram(model, names, data, kind="images")
    with pytest.raises(InputError, match="integer tokens"):
        D.distributed_gram(model, names, data.to(F64), kind="lm")
    with pytest.raises(InputError, match="budget"):
        D.distributed_gram(model, names, data, kind="lm", budget_bytes=64)
    model.train()
    with pytest.raises(InputError, match="training mode"):
        D.distributed_gram(model, names, data, kind="lm")
    m2, X, y = digits()
    X[3, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        D.distributed_gram(m2, [n for n, _ in m2.named_parameters()], (X, y))


def test_nan_score_is_an_error_naming_the_sample():
    model, data = tiny_lm(), lm_data()
    with torch.no_grad():
        model.head.weight[7, 0] = float("nan")
    with pytest.raises(InputError, match="NaN or inf score"):
        D.distributed_gram(model, model.default_param_names(), data, kind="lm")


def test_torchrun_environment_without_a_process_group_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    model, data = tiny_lm(), lm_data()
    with pytest.raises(InputError, match="no torch.distributed process group"):
        D.distributed_gram(model, model.default_param_names(), data, kind="lm")
    with pytest.raises(InputError, match="unknown backend"):
        D.init_from_env("tcp")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(InputError, match="RANK"):
        D.init_from_env("gloo")
    if not dist.is_mpi_available():
        with pytest.raises(InputError, match="'mpi' backend is not available"):
            D.init_from_env("mpi")


# ------------------------------------------------------------------------- two gloo processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_env() -> dict:
    env = dict(os.environ)
    if os.path.exists("/sys/class/net/lo"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.pop("WORLD_SIZE", None)
    return env


def _worker(rank: int, world: int, port: int, outdir: str) -> None:
    """One gloo rank: the LM Gram, then two calls that must fail on every rank."""
    if os.path.exists("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    out: dict = {}
    try:
        model, data = tiny_lm(), lm_data()
        names = tuple(n for n, _ in model.named_parameters())
        g = D.distributed_gram(model, names, data, kind="lm", budget_bytes=8 * 2 * T * 6000)
        out["lambda"] = D.lambda_max_from_gram(g).value
        out["shards"] = [list(s) for s in g.shards]
        out["timings"] = list(g.timings)
        torch.save(g.K, os.path.join(outdir, f"K{rank}.pt"))
        # a NaN in a tensor owned by one rank only: both ranks must raise (no deadlock)
        bad = tiny_lm()
        with torch.no_grad():
            bad.head.weight[3, 1] = float("nan")
        try:
            D.distributed_gram(bad, ["head.weight", "tok.weight"], data, kind="lm")
            out["nan"] = "no error"
        except InputError as exc:
            out["nan"] = str(exc)
        # a refusal on one rank only (rank 0's tensor does not fit the budget): both raise
        try:
            D.distributed_gram(model, ["head.weight", "blocks.0.ln1.bias"], data, kind="lm", budget_bytes=8 * T * 1000)
            out["one"] = "no error"
        except InputError as exc:
            out["one"] = str(exc)
        # rank 1 alone refuses its arguments (a name its model lacks): no rank hangs, both raise
        try:
            D.distributed_gram(model, ["head.weight"] if rank == 0 else ["nope"], data, kind="lm")
            out["refused"] = "no error"
        except InputError as exc:
            out["refused"] = str(exc)
        # ranks given different data
        try:
            D.distributed_gram(model, names, lm_data(seed=rank), kind="lm")
            out["mismatch"] = "no error"
        except InputError as exc:
            out["mismatch"] = str(exc)
    finally:
        with open(os.path.join(outdir, f"rank{rank}.json"), "w") as fh:
            json.dump(out, fh)
        dist.barrier()  # neither rank closes its connections while the other still talks
        dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # see torch_checks.distributed's __main__: shutdown after gloo + torch.func may abort


@needs_gloo
def test_two_gloo_processes_equal_the_single_process_gram(tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    if "GLOO_SOCKET_IFNAME" in _loopback_env():
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", _loopback_env()["GLOO_SOCKET_IFNAME"])
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    K = [torch.load(tmp_path / f"K{r}.pt") for r in range(2)]
    names = tuple(n for n, _ in tiny_lm().named_parameters())
    ref = lm_reference()
    assert torch.equal(K[0], K[1])  # the all-reduce leaves the same K on both ranks
    assert rel_diff(K[0], ref) <= REL
    lam_ref = float(torch.linalg.eigvalsh(ref)[-1])
    assert res[0]["lambda"] == res[1]["lambda"]
    assert abs(res[0]["lambda"] - lam_ref) <= REL * lam_ref
    # each rank owned a non-empty, disjoint part of θ
    s0, s1 = res[0]["shards"]
    assert s0 and s1 and not set(s0) & set(s1) and sorted(s0 + s1) == sorted(names)
    for r in range(2):
        assert "rank 0" in res[r]["nan"] and "NaN or inf score" in res[r]["nan"]
        assert "ranks disagree" in res[r]["mismatch"]
        assert res[r]["one"].startswith("rank 0: ") and "rank 1" not in res[r]["one"]
        assert res[r]["refused"].startswith("rank 1: UnknownIdError") and "rank 0" not in res[r]["refused"]


@needs_gloo
def test_torchrun_launcher_two_ranks(tmp_path):
    port = _free_port()
    gram, js = tmp_path / "K.pt", tmp_path / "out.json"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(port), "-m", "torch_checks.distributed", "--config", "tiny", "--init", "random",
        "--contexts", "2", "--length", str(T), "--params", "all", "--budget-mib", "4",
        "--save-gram", str(gram), "--json", str(js),
    ]  # fmt: skip
    run = subprocess.run(cmd, env=_loopback_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "λ_max =" in run.stdout and "rank 1:" in run.stdout
    doc = json.loads(js.read_text())
    assert doc["world_size"] == 2 and doc["backend"] == "gloo"
    args = D._parser().parse_args(["--config", "tiny", "--init", "random", "--contexts", "2", "--length", str(T),
                                   "--params", "all"])  # fmt: skip
    model, names, data, kind = D.launch_inputs(args)
    ref = reference_gram(model, names, data, kind)
    assert rel_diff(torch.load(gram), ref) <= REL
    lam_ref = float(torch.linalg.eigvalsh(ref)[-1])
    assert abs(doc["lambda_max"] - lam_ref) <= REL * lam_ref


def test_launcher_bad_input_exits_2(tmp_path, capsys):
    assert D.main(["--model", "mlp-digits", "--init", "random"]) == 2
    assert "byte-lm only" in capsys.readouterr().err
    assert D.main(["--json", str(tmp_path / "no" / "x.json")]) == 2
