"""Mutation killers for torch_checks.streaming (the KV-cache σ_t stream, its Gram store, its
Lanczos and its measurement helpers).

Each test was written from a surviving mutant of a mutmut run and checked to fail on that
mutant and pass on the original (docs/mutation_torch.md lists them). References are
independent of the code under test: per-token autograd loops written here, dense float64
eigendecompositions (numpy), closed forms.
"""

from __future__ import annotations

import copy
import sys
import time
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from test_mutation_killers_torch_monitor import INVARIANT_BLOCK_CASES, check_restarts, restart_spy  # noqa: E402
from torch import nn  # noqa: E402

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import streaming as STR  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


# --------------------------------------------------------------------------------------
# push_profile: medians of the push times near t (closed form on hand-made records)
# --------------------------------------------------------------------------------------


def _records(n=40, nan_at=(0, 21)):
    out = []
    for t in range(n):
        out.append(
            STR.PushRecord(
                t=t,
                token=t % 7,
                sigma=float("nan") if t in nan_at else 0.5 + t,
                lam=1.0 + t,
                alert=False,
                n_scores=t,
                model_seconds=0.001 * (t + 1),
                gram_seconds=0.0005 * t * t,
                model_cpu_seconds=0.002 * t + 0.0001 * (t % 3),
                gram_cpu_seconds=0.003 * (t % 5),
            )
        )
    return out


def _expected_profile(recs, ts, at):
    sel = [r for r in recs if r.t in ts]
    return {
        "t": at,
        "pushes": len(sel),
        "n_scores": int(np.median([r.n_scores for r in sel])),
        "median_push_cpu_ms": 1e3 * float(np.median([r.model_cpu_seconds + r.gram_cpu_seconds for r in sel])),
        "median_model_cpu_ms": 1e3 * float(np.median([r.model_cpu_seconds for r in sel])),
        "median_gram_eig_cpu_ms": 1e3 * float(np.median([r.gram_cpu_seconds for r in sel])),
        "median_push_wall_ms": 1e3 * float(np.median([r.model_seconds + r.gram_seconds for r in sel])),
        "median_model_wall_ms": 1e3 * float(np.median([r.model_seconds for r in sel])),
        "median_gram_eig_wall_ms": 1e3 * float(np.median([r.gram_seconds for r in sel])),
    }


@pytest.mark.parametrize(
    "at, span, ts",
    [
        (20, 6, [17, 18, 19, 20, 22]),  # t in [17, 23), without the unscored push at 21
        (20, 5, [18, 19, 20]),  # an odd span: half = 5 // 2 = 2, t in [18, 22)
        (8, None, list(range(1, 16))),  # default span 16: t in [0, 16), without the first push
        (30, 2, [29, 30]),
        (39, 4, [37, 38, 39]),  # the window runs past the last record
    ],
)
def test_push_profile_medians_over_the_scored_pushes_near_t(at, span, ts):
    recs = _records()
    got = STR.push_profile(recs, at) if span is None else STR.push_profile(recs, at, span)
    want = _expected_profile(recs, ts, at)
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=0), k
        assert type(got[k]) is type(v), k


def test_push_profile_refuses_a_window_with_only_unscored_pushes():
    recs = _records(nan_at=tuple(range(40)))
    with pytest.raises(InputError) as exc:
        STR.push_profile(recs, 10, 4)
    assert str(exc.value) == "no scored push near t = 10"


def test_push_profile_an_odd_span_of_one_selects_nothing():
    with pytest.raises(InputError) as exc:  # half = 1 // 2 = 0: t in [30, 30) is empty
        STR.push_profile(_records(), 30, 1)
    assert str(exc.value) == "no scored push near t = 30"


# --------------------------------------------------------------------------------------
# measure_stream / validate_stream on a tiny GPT-2 (KV cache) and a plain module (recompute)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2():
    pytest.importorskip("transformers", reason="the Hugging Face models need transformers")
    from tests import byo_models as B

    return B.gpt2_model(n_positions=160).double()


class _PlainLM(nn.Module):
    """No cache interface: logits at t depend on tokens ≤ t (embedding, causal cumulative mean;
    on its inputs' device, so the device killers can build it under another default device)."""

    def __init__(self, vocab=11, dim=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        h = self.emb(x)
        h = h.cumsum(1) / torch.arange(1, h.shape[1] + 1, dtype=h.dtype, device=h.device)[None, :, None]
        return self.head(torch.tanh(h))


def _recording(monkeypatch):
    made = []

    class Recording(STR.StreamingSigma):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(STR, "StreamingSigma", Recording)
    return made


def _replica(model, names, n_tokens, *, window, mode, seed):
    s = STR.StreamingSigma(model, names, 1.0, window=window, mode=mode)
    s.push(0)
    s.generate(n_tokens - 1, temperature=1.0, seed=seed)
    return s


GPT2_NAMES = ("transformer.ln_f.weight", "transformer.ln_f.bias", "transformer.h.1.mlp.c_proj.weight")


def test_measure_stream_without_a_cache_interface(monkeypatch):
    torch.manual_seed(3)
    lm = _PlainLM().double().eval()
    made = _recording(monkeypatch)
    ticks = []
    r = STR.measure_stream(
        lm,
        ["head.weight"],
        n_tokens=130,
        at=(4, 9, 60),
        window=3,
        mode="recompute",
        seed=1,
        span=4,
        progress=ticks.append,
    )
    (s,) = made
    assert len(s.tokens) == 130 and s.tokens[0] == 0 and s.window == 3
    assert r["mode"] == "recompute" and r["mode_reason"] == "requested" and r["window"] == 3
    assert r["P"] == 44 and r["params"] == ["head.weight"]
    assert [(p["t"], p["pushes"], p["n_scores"]) for p in r["at"]] == [(4, 4, 3), (9, 4, 3), (60, 4, 3)]
    assert all("bare_forward_cpu_ms" not in p and "monitor_overhead_cpu_ms" not in p for p in r["at"])
    assert r["ratio_monitor_overhead"] is None and r["ratio_bare_forward"] is None
    assert r["lanczos_steps_median_last"] == float(np.median(s.iterations[-4:]))
    lo, hi = r["at"][0], r["at"][-1]  # the ratios are last / first
    assert r["ratio"] == hi["median_push_cpu_ms"] / lo["median_push_cpu_ms"]
    assert r["ratio_wall"] == hi["median_push_wall_ms"] / lo["median_push_wall_ms"]
    assert r["ratio_model_part"] == hi["median_model_cpu_ms"] / lo["median_model_cpu_ms"]
    assert r["fallbacks"] == s.fallbacks
    assert r["seconds"] > 0 and r["seconds"] == round(r["seconds"], 2)
    rec = s.records[128]
    assert ticks == [f"t = 128: {1e3 * (rec.model_cpu_seconds + rec.gram_cpu_seconds):.2f} ms CPU/push"]


def _sampled_tokens(model, first, n, *, temperature, seed):
    """Reference generation: softmax(full-prefix logits / T), one multinomial draw per token."""
    gen = torch.Generator().manual_seed(seed)
    toks = [first]
    for _ in range(n - 1):
        with torch.no_grad():
            out = model(torch.tensor([toks]))
        logits = getattr(out, "logits", out)[0, -1].double()
        toks.append(int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)))
    return toks


def test_measure_stream_defaults_seed_0_temperature_1_span_16(monkeypatch):
    """The default seed (0), the sampling temperature (1) and the default span (16): the tokens
    are the reference sampling loop's, and the Lanczos median is over the last 16 pushes (for 19
    tokens the last 16 and last 17 step counts have different medians, 8.5 and 8)."""
    torch.manual_seed(3)
    lm = _PlainLM().double().eval()
    made = _recording(monkeypatch)
    r = STR.measure_stream(lm, ["head.weight"], n_tokens=19, at=(8, 12), mode="recompute")
    (s,) = made
    assert s.tokens == _sampled_tokens(lm, 0, 19, temperature=1.0, seed=0)
    assert [(p["t"], p["pushes"]) for p in r["at"]] == [(8, 15), (12, 15)]  # t in [at − 8, at + 8), t ≥ 1
    assert r["lanczos_steps_median_last"] == float(np.median(s.iterations[-16:]))
    assert float(np.median(s.iterations[-16:])) != float(np.median(s.iterations[-17:]))
    # one time t: the ratios are 1 (last = first), and without a cache they are None
    one = STR.measure_stream(lm, ["head.weight"], n_tokens=19, at=(8,), mode="recompute")
    assert one["ratio"] == one["ratio_wall"] == one["ratio_model_part"] == 1.0
    assert one["ratio_monitor_overhead"] is None and one["ratio_bare_forward"] is None


def test_measure_stream_reports_what_it_measured(gpt2, monkeypatch):
    made = _recording(monkeypatch)
    bare_calls = []
    real_bare = STR.bare_forward_cpu_ms

    def bare(model, tokens, at, span=16):
        bare_calls.append((model, list(tokens), at, span))
        return real_bare(model, tokens, at, span)

    monkeypatch.setattr(STR, "bare_forward_cpu_ms", bare)
    ticks = []
    r = STR.measure_stream(
        gpt2, GPT2_NAMES, n_tokens=40, at=(12, 20, 30), window=None, seed=4, span=8, progress=ticks.append
    )
    s = made[-1]  # (mode "auto" makes a probe stream first)
    assert s.tokens == _sampled_tokens(gpt2, 0, 40, temperature=1.0, seed=4)
    assert s.lambda_base == 1.0 and s.window is None
    assert r["mode"] == "kv-cache" == s.mode and r["mode_reason"] == s.mode_reason
    assert r["mode_reason"].startswith("position-wise")
    assert r["window"] is None
    params = dict(gpt2.named_parameters())
    assert r["P"] == sum(params[n].numel() for n in GPT2_NAMES) == 32 + 32 + 128 * 32
    assert r["params"] == list(GPT2_NAMES)
    assert [p["t"] for p in r["at"]] == [12, 20, 30]
    # the model's own forward is timed at each t over the same span, on the stream's tokens
    assert bare_calls == [(gpt2, s.tokens, t, 8) for t in (12, 20, 30)]
    for p in r["at"]:
        # records t − 4 … t + 3 hold t − 4 … t + 3 scores: median t − 0.5, as an int t − 1
        assert p["pushes"] == 8 and p["n_scores"] == p["t"] - 1
        assert p["bare_forward_cpu_ms"] >= 0
        assert p["monitor_overhead_cpu_ms"] == p["median_push_cpu_ms"] - p["bare_forward_cpu_ms"]
    lo, hi = r["at"][0], r["at"][-1]  # the ratios are last / first
    assert r["ratio"] == hi["median_push_cpu_ms"] / lo["median_push_cpu_ms"]
    assert r["ratio_wall"] == hi["median_push_wall_ms"] / lo["median_push_wall_ms"]
    assert r["ratio_model_part"] == hi["median_model_cpu_ms"] / lo["median_model_cpu_ms"]
    assert r["ratio_monitor_overhead"] == hi["monitor_overhead_cpu_ms"] / lo["monitor_overhead_cpu_ms"]
    assert r["ratio_bare_forward"] == hi["bare_forward_cpu_ms"] / lo["bare_forward_cpu_ms"]
    assert r["lanczos_steps_median_last"] == float(np.median(s.iterations[-8:]))
    assert len(s.iterations) == 39 and r["fallbacks"] == s.fallbacks == 0
    assert r["seconds"] > 0 and r["seconds"] == round(r["seconds"], 2)
    assert ticks == []  # progress only at t = 0 mod 128


def _autograd_token_rows(model, names, tokens):
    """Reference per-token scores: a float64 copy, one torch.autograd.grad per position."""
    ref = copy.deepcopy(model).double()
    params = dict(ref.named_parameters())
    rows = []
    for i in range(len(tokens) - 1):
        out = ref(torch.as_tensor(tokens[: i + 1])[None])
        out = getattr(out, "logits", out)[0, -1]
        lp = torch.log_softmax(out, dim=-1)[int(tokens[i + 1])]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, [params[n] for n in names])]))
    return torch.stack(rows)


def _dense_lams(G, window):
    G = G.detach().numpy()
    out = []
    for t in range(1, G.shape[0] + 1):
        rows = G[:t] if window is None else G[max(0, t - window) : t]
        out.append(float(np.linalg.eigvalsh(rows @ rows.T)[-1]) / rows.shape[0])
    return np.asarray(out)


@pytest.mark.parametrize("window, seed", [(None, 2), (4, None)])
def test_validate_stream_error_is_the_largest_relative_error(monkeypatch, window, seed):
    """The reference is replaced by the autograd-loop λ's times (1 + d_t) with known d_t: the
    reported error must be max_t |λ_t − λ_t(1 + d_t)| / (λ_t(1 + d_t)), from the stream of
    push(0) and a seeded temperature-1 generation (seed None: the default, 0)."""
    torch.manual_seed(5)
    lm = _PlainLM().double().eval()
    names = ["head.weight", "emb.weight"]
    seen = {}
    d = None

    def fake(model, param_names, tokens, *, window=None):
        seen.update(tokens=tokens.tolist(), window=window, names=tuple(param_names))
        lams = _dense_lams(_autograd_token_rows(model, list(param_names), tokens.tolist()), window)
        return lams * (1 + d[: len(lams)])

    d = np.array([1e-3, -2e-3, 5e-4, 3e-3, -1e-4, 2.5e-3, 0.0, 1e-3, -3e-3, 2e-4])
    monkeypatch.setattr(STR, "full_prefix_lambdas", fake)
    made = _recording(monkeypatch)
    r = STR.validate_stream(lm, names, n_tokens=11, window=window, **({} if seed is None else {"seed": seed}))
    s = made[-1]  # (mode "auto" makes a probe stream first)
    ref = _replica(lm, names, 11, window=window, mode="auto", seed=0 if seed is None else seed)
    assert s.tokens == _sampled_tokens(lm, 0, 11, temperature=1.0, seed=0 if seed is None else seed)
    assert seen == {"tokens": ref.tokens, "window": window, "names": tuple(names)}
    assert s.tokens == ref.tokens and len(s.tokens) == 11 and s.tokens[0] == 0
    want = float(np.max(np.abs(d) / (1 + d)))
    assert r["max_rel_error"] == pytest.approx(want, rel=1e-8)
    assert r == {
        "mode": "recompute",
        "window": window,
        "tokens": 11,
        "max_rel_error": r["max_rel_error"],
        "tol": 1e-8,
        "fallbacks": 0,
    }


# --------------------------------------------------------------------------------------
# generate: defaults, validation, sampling against a reference loop, eos, on_token
# --------------------------------------------------------------------------------------


def _full_logits(model, toks):
    with torch.no_grad():
        out = model(torch.tensor([toks]))
    return getattr(out, "logits", out)[0, -1].double()


def test_generate_default_is_greedy_and_default_seed_is_zero(gpt2):
    names = GPT2_NAMES
    s = STR.StreamingSigma(gpt2, names, 1.0)
    s.push(7)
    recs = s.generate(5)  # temperature 0 by default: the argmax of the full-prefix logits
    for i in range(1, 6):
        assert s.tokens[i] == int(_full_logits(gpt2, s.tokens[:i]).argmax())
    assert [r.token for r in recs] == s.tokens[1:]
    a = STR.StreamingSigma(gpt2, names, 1.0)
    a.push(7)
    b = STR.StreamingSigma(gpt2, names, 1.0)
    b.push(7)
    assert [r.token for r in a.generate(6, temperature=1.0)] == [
        r.token for r in b.generate(6, temperature=1.0, seed=0)
    ]


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_generate_samples_softmax_of_logits_over_temperature(gpt2, temperature):
    """Reference: the full-prefix float64 logits, softmax(logits / T), one torch.multinomial draw
    per token from a CPU generator seeded with ``seed``."""
    s = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0)
    s.push(11)
    s.generate(8, temperature=temperature, seed=9)
    gen = torch.Generator().manual_seed(9)
    toks = [11]
    for _ in range(8):
        p = torch.softmax(_full_logits(gpt2, toks) / temperature, dim=-1)
        toks.append(int(torch.multinomial(p, 1, generator=gen)))
    assert s.tokens == toks


def test_generate_stops_at_eos_and_calls_on_token_with_each_record(gpt2):
    s = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0)
    s.push(7)
    greedy = s.generate(6)
    eos = greedy[2].token
    first = next(i for i, r in enumerate(greedy) if r.token == eos)
    seen = []
    s2 = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0)
    s2.push(7)
    recs = s2.generate(6, eos=eos, on_token=seen.append)
    assert [r.token for r in recs] == [r.token for r in greedy[: first + 1]]
    assert seen == recs and all(a is b for a, b in zip(seen, s2.records[1:]))
    s3 = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0)
    s3.push(7)
    never = next(v for v in range(300) if v not in [r.token for r in greedy])
    assert [r.token for r in s3.generate(6, eos=never)] == [r.token for r in greedy]
    s4 = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0)
    s4.push(7)
    assert s4.generate(0) == [] and s4.tokens == [7]
    seen4 = []
    recs4 = s4.generate(4, temperature=1.0, seed=3, on_token=seen4.append)
    assert len(recs4) == 4 and all(a is b for a, b in zip(seen4, recs4)) and len(seen4) == 4
    assert [r.t for r in seen4] == [1, 2, 3, 4]


def test_generate_refusals_name_the_argument(gpt2):
    s = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0)
    with pytest.raises(InputError) as exc:
        s.generate(3)
    assert str(exc.value) == "push at least one token (the prompt) before generating"
    s.push(1)
    for bad in (-1, True, 2.5, None):
        with pytest.raises(InputError) as exc:
            s.generate(bad)
        assert str(exc.value) == f"n_new must be a non-negative integer, got {bad!r}"
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(InputError) as exc:
            s.generate(2, temperature=bad)
        assert str(exc.value) == f"temperature must be finite and >= 0, got {bad!r}"
    assert s.tokens == [1]


# --------------------------------------------------------------------------------------
# skip and the recompute path's next-token logits
# --------------------------------------------------------------------------------------


def _forward_lengths(model):
    seen = []

    def pre(m, args, kwargs):
        x = kwargs.get("input_ids", args[0] if args else None)
        seen.append(int(x.shape[-1]))

    return seen, model.register_forward_pre_hook(pre, with_kwargs=True)


@pytest.mark.parametrize("n_skip", [1, 2, 3])
def test_skip_forwards_the_prompt_once_and_scores_like_the_full_sequence(gpt2, n_skip):
    """kv-cache: skip(k tokens) = one forward of k − 1 tokens (none for k = 1) and one of the last
    token; next_logits are the full-prefix logits; the scores after it are those of the whole
    sequence (autograd reference)."""
    toks = [5, 17, 42, 8, 99, 3, 61][: n_skip + 4]
    s = STR.StreamingSigma(gpt2, GPT2_NAMES, 1.0, mode="kv-cache")
    seen, h = _forward_lengths(gpt2)
    try:
        s.skip(toks[:n_skip])
    finally:
        h.remove()
    assert seen == ([n_skip - 1] if n_skip > 1 else []) + [1]
    torch.testing.assert_close(s.next_logits, _full_logits(gpt2, toks[:n_skip]), rtol=1e-12, atol=1e-12)
    for t in toks[n_skip:]:
        s.push(t)
    G = _autograd_token_rows(gpt2, list(GPT2_NAMES), toks)[n_skip - 1 :]
    np.testing.assert_allclose(s.lambdas[1:] if n_skip == 0 else s.lambdas, _dense_lams(G, None), rtol=1e-10)


def test_recompute_next_logits_are_the_full_prefix_logits(gpt2):
    """recompute (a general group): after push and after skip, next_logits are the last-position
    logits of a forward of the whole sequence so far; a later skip must not reuse a cache."""
    names = ("transformer.h.0.mlp.c_fc.weight",)
    s = STR.StreamingSigma(gpt2, names, 1.0, mode="recompute")
    toks = [4, 250, 13]
    s.push(toks[0])
    torch.testing.assert_close(s.next_logits, _full_logits(gpt2, toks[:1]), rtol=1e-12, atol=1e-12)
    s.push(toks[1])
    torch.testing.assert_close(s.next_logits, _full_logits(gpt2, toks[:2]), rtol=1e-12, atol=1e-12)
    s.skip([toks[2], 77])
    torch.testing.assert_close(s.next_logits, _full_logits(gpt2, toks + [77]), rtol=1e-12, atol=1e-12)
    s.push(9)
    torch.testing.assert_close(s.next_logits, _full_logits(gpt2, toks + [77, 9]), rtol=1e-12, atol=1e-12)
    G = _autograd_token_rows(gpt2, list(names), toks + [77, 9])
    np.testing.assert_allclose(s.lambdas[1:], _dense_lams(G[[0, 3]], None), rtol=1e-10)


# --------------------------------------------------------------------------------------
# the recompute path's dense rows: layers called twice, unused outputs, dense tensors, dtypes
# --------------------------------------------------------------------------------------


class _TwiceLM(nn.Module):
    """``mid`` is called twice per forward; ``aux`` (Linear) and ``aux_norm`` (LayerNorm) are
    called but their outputs never reach the logits; ``norm`` has two dense tensors."""

    def __init__(self, vocab=9, dim=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mid = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.aux = nn.Linear(dim, 2)
        self.aux_norm = nn.LayerNorm(2)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        h = self.emb(x)
        h = h.cumsum(1) / torch.arange(1, h.shape[1] + 1, dtype=h.dtype)[None, :, None]
        h = self.mid(torch.tanh(self.mid(h)))
        self.last_aux = self.aux_norm(self.aux(h)).detach()  # computed, not used by the logits
        return self.head(self.norm(torch.tanh(h)))


def _autograd_rows_allow_unused(model, names, tokens):
    ref = copy.deepcopy(model).double()
    params = dict(ref.named_parameters())
    rows = []
    for i in range(len(tokens) - 1):
        out = ref(torch.as_tensor(tokens[: i + 1])[None])[0, -1]
        lp = torch.log_softmax(out, dim=-1)[int(tokens[i + 1])]
        sub = [params[n] for n in names]
        gs = torch.autograd.grad(lp, sub, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(sub, gs)]))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "names",
    [
        ["mid.weight", "mid.bias"],  # a layer called twice: the row is the sum over both calls
        ["norm.weight", "norm.bias", "head.weight"],  # two dense tensors after the hooked ones
        ["head.bias", "aux.weight", "aux_norm.weight"],  # outputs that never reach the logits
        ["emb.weight", "mid.weight"],
    ],
)
@pytest.mark.parametrize("window", [None, 3])
def test_recompute_rows_equal_the_autograd_scores(names, window):
    torch.manual_seed(8)
    lm = _TwiceLM().double().eval()
    toks = [1, 4, 4, 7, 0, 2, 8]
    s = STR.StreamingSigma(lm, names, 1.0, mode="recompute", window=window)
    for t in toks:
        s.push(t)
    G = _autograd_rows_allow_unused(lm, names, toks)
    np.testing.assert_allclose(s.lambdas[1:], _dense_lams(G, window), rtol=1e-10)


@pytest.mark.parametrize("mode", ["recompute", "kv-cache"])
def test_float32_model_rows_are_stored_in_float64(gpt2, mode):
    """The Gram store holds float64 factors whatever the model dtype (its docstring)."""
    m32 = copy.deepcopy(gpt2).float()
    names = ("transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.weight", "transformer.wte.weight")
    names = names[:2] if mode == "kv-cache" else names
    s = STR.StreamingSigma(m32, names, 1.0, mode=mode)
    for t in [3, 9, 27, 81]:
        s.push(t)
    dtypes = {k: b.dtype for bufs in s.store.bufs for k, b in bufs.items() if k != "idx"}
    assert dtypes and set(dtypes.values()) == {torch.float64}, dtypes
    assert s.store.K.dtype == torch.float64


# --------------------------------------------------------------------------------------
# _GramStore: capacity doubling, ring slots, the Gram entries of every component kind
# --------------------------------------------------------------------------------------


def test_gram_store_doubles_its_capacity_and_keeps_the_gram():
    comp = STR.Component("dense", ("x",))
    store = STR._GramStore([comp], None, torch.device("cpu"))
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(37, 5, generator=g, dtype=F64)
    caps = []
    for r in rows:
        store.add([{"g": r}])
        caps.append(store.cap)
    assert caps == [16] * 16 + [32] * 16 + [64] * 5
    np.testing.assert_allclose(store.active().numpy(), (rows @ rows.T).numpy(), rtol=1e-13, atol=1e-13)
    assert store.bufs[0]["g"].shape == (64, 5)
    np.testing.assert_array_equal(store.bufs[0]["g"][:37].numpy(), rows.numpy())


# --------------------------------------------------------------------------------------
# full_prefix_lambdas: the dense reference itself
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [None, 2])
def test_full_prefix_lambdas_against_autograd_rows(window):
    """Two tokens are enough (one score: λ = ‖g‖²); a float32 model is scored in float64."""
    torch.manual_seed(12)
    lm = _PlainLM()  # float32
    for toks in ([3, 5], [3, 5, 1, 1, 9]):
        got = STR.full_prefix_lambdas(lm, ["head.weight", "emb.weight"], toks, window=window)
        G = _autograd_token_rows(lm, ["head.weight", "emb.weight"], toks)
        np.testing.assert_allclose(got, _dense_lams(G.double(), window), rtol=1e-10)
        assert got.dtype == np.float64 and got.shape == (len(toks) - 1,)
    with pytest.raises(InputError) as exc:
        STR.full_prefix_lambdas(lm, ["head.weight"], [3])
    assert str(exc.value) == "need at least 2 tokens"


# --------------------------------------------------------------------------------------
# _lanczos_top: a start whose Krylov space is invariant and misses the top eigenvector
# --------------------------------------------------------------------------------------


def _diag64(*d):
    return torch.diag(torch.tensor(d, dtype=F64))


def _rotated_pair():
    # K = 10 v1 v1ᵀ + 9.9 v2 v2ᵀ with v1 = 1/√3: λ_2 = 9.9 exceeds max diag(K) = 8.28, so the
    # stream's diagonal floor cannot tell the wrong Ritz value; the start is v2
    v1 = torch.ones(3, dtype=F64) / 3**0.5
    v2 = torch.tensor([1.0, -1.0, 0.0], dtype=F64) / 2**0.5
    return 10.0 * torch.outer(v1, v1) + 9.9 * torch.outer(v2, v2), v2.clone()


@pytest.mark.parametrize(
    "K, start",
    [
        (_diag64(1.0, 0.0, 0.0), torch.tensor([0.0, 1.0, 0.0], dtype=F64)),  # start in the null space
        (_diag64(1.0, 2.0, 0.0, 3.0), torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)),  # block {e1, e3}
        _rotated_pair(),
        (_diag64(3.0, 2.0, 2.3), torch.tensor([1.0, 0.0, 0.0], dtype=F64)),  # the top eigenvector itself
        (_diag64(1.0, 2.0, 5.0), torch.tensor([1.0, 1.0, 0.0], dtype=F64)),  # block {e1, e2}, then e3
    ],
)
def test_lanczos_top_start_in_an_invariant_subspace_missing_the_top(K, start):
    """The Ritz value of an invariant Krylov space is an eigenvalue with a zero residual, but not
    necessarily the largest: the result must be the dense float64 λ_max (these spaces are small
    enough for Lanczos to reach it) with its eigenvector, reported as converged."""
    top = float(np.linalg.eigvalsh(K.numpy())[-1])
    theta, vec, steps, ok = STR._lanczos_top(K, start, 1e-12, 60)
    assert ok
    assert theta == pytest.approx(top, rel=1e-12)
    assert float(torch.linalg.vector_norm(K @ vec - top * vec)) <= 1e-10 * top
    assert float(torch.linalg.vector_norm(vec)) == pytest.approx(1.0, abs=1e-12)
    assert steps >= 1
    assert steps <= K.shape[0]


def test_lanczos_top_budget_spent_in_an_uncertified_invariant_block_is_not_converged():
    """diag(1, 2, 0, 3) from e1 + e3: the Krylov space {e1, e3} closes after 2 steps with θ = 1,
    and ‖K‖_F² − ‖T‖_F² = 14 − 1 leaves room for a larger eigenvalue. With a budget of 2 steps
    nothing more can be learnt: the result must say "not converged" (the stream then falls
    back to eigvalsh), not return 1 as λ_max = 3."""
    K = _diag64(1.0, 2.0, 0.0, 3.0)
    theta, vec, steps, ok = STR._lanczos_top(K, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64), 1e-12, 2)
    assert not ok or theta == pytest.approx(3.0, rel=1e-12)
    assert steps <= 2


def test_lanczos_top_budget_spent_after_a_restart_is_not_converged():
    """diag(3, 2, 1.9, 1.8, 1.7, 1.6) from e1: e1 is invariant at once (θ = 3) but the rest of the
    spectrum is only bounded by (‖K‖_F² − 9)^½ = 4.04 > 3, so Lanczos restarts; with a budget of
    2 steps the restarted block cannot certify anything: θ = 3 (the best Ritz value), not
    converged. With the default budget the same start is certified."""
    K = _diag64(3.0, 2.0, 1.9, 1.8, 1.7, 1.6)
    e1 = torch.zeros(6, dtype=F64)
    e1[0] = 1.0
    theta, vec, steps, ok = STR._lanczos_top(K, e1, 1e-12, 2)
    assert (theta, steps, ok) == (3.0, 2, False)
    assert abs(float(vec[0])) == pytest.approx(1.0, abs=1e-15)
    theta, vec, steps, ok = STR._lanczos_top(K, e1, 1e-12, 60)
    assert ok and theta == pytest.approx(3.0, rel=1e-12) and steps <= 6


@pytest.mark.parametrize("d, start, steps", INVARIANT_BLOCK_CASES)
def test_lanczos_top_invariant_blocks_step_counts(d, start, steps):
    """Step counts from the Frobenius certificate rest = (‖K‖_F² − Σ‖T_block‖_F²)^½ computed by
    hand (comments); the value is the dense λ_max and the vector its eigenvector."""
    K = _diag64(*d)
    theta, vec, it, ok = STR._lanczos_top(K, torch.tensor(start, dtype=F64), 1e-12, 60)
    assert (theta, it, ok) == (pytest.approx(max(d), rel=1e-14), steps, True)
    assert abs(float(vec[int(np.argmax(d))])) == pytest.approx(1.0, abs=1e-12)


def test_lanczos_top_of_the_zero_matrix_and_of_a_bad_start():
    """K = 0: λ = 0, converged, one step. A non-finite or zero start is replaced by the all-ones
    vector (the same result as passing it)."""
    theta, vec, it, ok = STR._lanczos_top(torch.zeros(3, 3, dtype=F64), None, 1e-12, 60)
    assert (theta, it, ok) == (0.0, 1, True)
    K = _rotated_pair()[0] + _diag64(0.0, 0.0, 0.5)
    ref = STR._lanczos_top(K, torch.ones(3, dtype=F64), 1e-12, 60)
    for bad in (None, torch.zeros(3, dtype=F64), torch.tensor([1.0, float("nan"), 0.0], dtype=F64)):
        got = STR._lanczos_top(K, bad, 1e-12, 60)
        assert got[0] == ref[0] and got[2:] == ref[2:] and torch.equal(got[1], ref[1])
    assert ref[0] == pytest.approx(float(np.linalg.eigvalsh(K.numpy())[-1]), rel=1e-12)


def test_lanczos_top_of_a_float32_matrix_runs_in_float32():
    """A float32 K (also through a restart: the rotated pair from v2) gives λ_max to float32
    accuracy and a float32 Ritz vector."""
    K64, v2 = _rotated_pair()
    for K, start in ((K64.float(), v2.float()), ((K64 + _diag64(0.0, 0.0, 0.5)).float(), None)):
        top = float(np.linalg.eigvalsh(K.double().numpy())[-1])
        theta, vec, steps, ok = STR._lanczos_top(K, start, 1e-6, 60)
        assert vec.dtype == torch.float32 and ok
        assert theta == pytest.approx(top, rel=1e-5)


def test_lanczos_top_one_step_budget_is_the_rayleigh_quotient_of_the_start():
    """max_iter = 1: one step, θ = the Rayleigh quotient of the start ((3 + 1)/2 = 2 for
    diag(3, 1) from (1, 1)), and not converged (the residual is 1); max_iter ≤ 0 also means 1."""
    K = _diag64(3.0, 1.0)
    for budget in (1, 0):
        theta, vec, steps, ok = STR._lanczos_top(K, torch.ones(2, dtype=F64), 1e-12, budget)
        assert (steps, ok) == (1, False)
        assert theta == pytest.approx(2.0, rel=1e-15)
        np.testing.assert_allclose(vec.numpy(), np.full(2, 2**-0.5), rtol=1e-15)


def test_lanczos_top_is_scale_invariant():
    """Lanczos on c·K from the same start takes the same steps for every scale c and returns
    c·λ_max (every test in it is relative: β against ‖K‖_F, the Ritz residual against θ)."""
    g = torch.Generator().manual_seed(4)
    Qm = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=F64))[0]
    K0 = Qm @ torch.diag(torch.tensor([10.0] + [1.0 / (i + 1) for i in range(29)], dtype=F64)) @ Qm.T
    start = torch.randn(30, generator=g, dtype=F64)
    top = float(np.linalg.eigvalsh(K0.numpy())[-1])
    runs = [STR._lanczos_top(c * K0, start, 1e-10, 60) for c in (1e-6, 1.0, 1e6)]
    assert len({r[2] for r in runs}) == 1 and runs[0][2] < 30, [r[2] for r in runs]
    for c, (theta, _vec, _steps, ok) in zip((1e-6, 1.0, 1e6), runs):
        assert ok and theta == pytest.approx(c * top, rel=1e-9)


def test_lanczos_top_restart_is_seeded_and_the_breakdown_is_relative_to_the_norm():
    """The rotated pair from v2, at the scales 1e-6, 1 and 1e6: the breakdown after one step is
    seen at every scale (β is compared with ‖K‖_F, not ‖K‖_F²), λ_max = 10·c is found after the
    restart, and the restart vector is seeded: the same bits whatever the global RNG state."""
    K, v2 = _rotated_pair()
    for c in (1e-6, 1.0, 1e6):
        torch.manual_seed(1)
        a = STR._lanczos_top(c * K, v2, 1e-12, 60)
        torch.manual_seed(2)
        b = STR._lanczos_top(c * K, v2, 1e-12, 60)
        assert a[3] and a[0] == pytest.approx(10.0 * c, rel=1e-12)
        assert a[0] == b[0] and a[2:] == b[2:] and torch.equal(a[1], b[1])


def test_lanczos_top_float32_step_just_above_the_breakdown_level_is_not_a_breakdown():
    """K = diag(1, 1 + δ, 0) in float32 from (1, 1, 0): the first step leaves β = δ/2 = 16.5
    float32 eps·‖K‖_F, above the breakdown level 16 eps·‖K‖_F, so Lanczos goes on and returns
    λ_max = 1 + δ within 10·tol (tol = 1e-7) of the float64 eigvalsh value; taken as a breakdown
    it would end at the Ritz value 1 + δ/2 of the invariant-looking block, 2.8e-6 too low."""
    eps = float(torch.finfo(torch.float32).eps)
    delta = 2 * 16.5 * eps * np.sqrt(2.0)
    K = torch.diag(torch.tensor([1.0, 1.0 + delta, 0.0], dtype=torch.float32))
    ref = float(np.linalg.eigvalsh(K.double().numpy())[-1])
    theta, vec, steps, ok = STR._lanczos_top(K, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float32), 1e-7, 60)
    assert ok and vec.dtype == torch.float32
    assert abs(theta - ref) <= 10 * 1e-7 * ref


def test_lanczos_top_breakdown_level_scales_with_the_norm_not_its_square():
    """c·K0 (a 30 × 30 PSD matrix, ‖K0‖_F ≈ 10) at c = 1 and c = 1e12 from the same start: the
    same step count and c·λ_max (the breakdown level is 1e-14·‖K‖_F: at c = 1e12 a level in
    ‖K‖_F² would be ~1e12 and take ordinary steps, β ~ 1e11, for breakdowns)."""
    g = torch.Generator().manual_seed(4)
    Qm = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=F64))[0]
    K0 = Qm @ torch.diag(torch.tensor([10.0] + [1.0 / (i + 1) for i in range(29)], dtype=F64)) @ Qm.T
    start = torch.randn(30, generator=g, dtype=F64)
    top = float(np.linalg.eigvalsh(K0.numpy())[-1])
    runs = [STR._lanczos_top(c * K0, start, 1e-10, 60) for c in (1.0, 1e12)]
    assert runs[0][2] == runs[1][2] < 30
    for c, (theta, _vec, _steps, ok) in zip((1.0, 1e12), runs):
        assert ok and theta == pytest.approx(c * top, rel=1e-9)


def test_lanczos_top_converged_flag_is_the_ten_tol_residual_test():
    """One step (max_iter = 1) of diag(3, 1) from (1, 1): θ = 2 with residual ‖Ky − θy‖ = 1
    whatever tol (no step can stop earlier). Converged means residual ≤ 10·tol·θ: true for
    tol = 1/(9.5·2), false for tol = 1/(10.5·2)."""
    K = torch.diag(torch.tensor([3.0, 1.0], dtype=F64))
    for tol, want in ((1 / 19.0, True), (1 / 21.0, False)):
        theta, vec, steps, ok = STR._lanczos_top(K, torch.ones(2, dtype=F64), tol, 1)
        assert (theta, steps, ok) == (pytest.approx(2.0, rel=1e-15), 1, want)
        assert float(torch.linalg.vector_norm(K @ vec - theta * vec)) == pytest.approx(1.0, rel=1e-14)


def test_lanczos_top_restarts_continue_one_seeded_generator(monkeypatch):
    """As top_eig_warm's (test_mutation_killers_torch_monitor.py): diag(1, 3, 3, 3, 3) from e1
    restarts three times or more, every restart the reference vector of one seeded generator."""
    calls = restart_spy(monkeypatch, STR)
    K = torch.diag(torch.tensor([1.0, 3.0, 3.0, 3.0, 3.0], dtype=F64))
    val, vec, it, ok = STR._lanczos_top(K, torch.eye(5, dtype=F64)[0], 1e-12, 60)
    assert ok and val == pytest.approx(3.0, rel=1e-14) and abs(float(vec[0])) <= 1e-14
    assert len(calls) >= 3
    check_restarts(calls)


def test_measure_stream_seconds_is_the_perf_counter_time_from_the_first_push(monkeypatch):
    """``seconds`` (module docstring): the perf_counter time from the first push to the report,
    rounded to 0.01 s. A fake clock that advances 0.37 s per reading (from 1000.0, so that an
    absolute time or a sum of readings cannot pass for a difference) makes the expected value
    exact: round(last − first of measure_stream's own two readings, 2), not near an integer."""
    readings = []

    def clock():
        value = 1000.0 + 0.37 * len(readings)
        readings.append((sys._getframe(1).f_code.co_name, value))
        return value

    monkeypatch.setattr(STR, "time", types.SimpleNamespace(perf_counter=clock, process_time=time.process_time))
    torch.manual_seed(3)
    lm = _PlainLM().double().eval()
    r = STR.measure_stream(lm, ["head.weight"], n_tokens=9, at=(4,), mode="recompute", span=4)
    own = [v for name, v in readings if "measure_stream" in name]
    assert len(own) == 2 and len(readings) > 2
    want = round(own[1] - own[0], 2)
    assert abs(want - round(want)) > 0.05
    assert r["seconds"] == want


def test_lanczos_top_stop_and_converged_tests_are_non_strict():
    """The stop test β·|s_last| ≤ tol·θ and the converged test ‖K y − θ y‖ ≤ 10·tol·θ are
    non-strict (module docstring), checked in exact binary arithmetic: K = [[1, 1/4], [1/4, 1/2]]
    from e1 has β = 1/4 and the Ritz pair (1, e1) after one step, so tol = 1/4 stops there
    (a tol one ulp below takes step 2); diag(3, 1, 1) from e1 is the exact eigenpair (3, e1)
    after one step (Frobenius bound √2 ≤ 3), residual 0, converged even for tol = 0."""
    K = torch.tensor([[1.0, 0.25], [0.25, 0.5]], dtype=F64)
    e1 = torch.tensor([1.0, 0.0], dtype=F64)
    theta, vec, steps, ok = STR._lanczos_top(K, e1, 0.25, 60)
    assert (theta, vec.tolist(), steps, ok) == (1.0, [1.0, 0.0], 1, True)
    theta, vec, steps, ok = STR._lanczos_top(K, e1, float(np.nextafter(0.25, 0.0)), 60)
    assert steps == 2 and ok and theta == pytest.approx(float(np.linalg.eigvalsh(K.numpy())[-1]), rel=1e-14)
    D = torch.diag(torch.tensor([3.0, 1.0, 1.0], dtype=F64))
    theta, vec, steps, ok = STR._lanczos_top(D, torch.eye(3, dtype=F64)[0], 0.0, 60)
    assert (theta, vec.tolist(), steps, ok) == (3.0, [1.0, 0.0, 0.0], 1, True)


# --------------------------------------------------------------------------------------
# push / skip / generate after an exception: the stream is marked until reset()
# --------------------------------------------------------------------------------------


def _fail_once(module, n, exc):
    """Forward hook raising ``exc`` on the module's ``n``-th call (after the module ran)."""
    count = [0]

    def hook(m, args, out):
        count[0] += 1
        if count[0] == n:
            raise exc

    return module.register_forward_hook(hook), count


def _stream_case(gpt2, mode):
    if mode == "kv-cache":
        return gpt2, GPT2_NAMES, gpt2.transformer.ln_f, [5, 17, 3, 40, 2, 9, 31]
    torch.manual_seed(4)
    lm = _PlainLM().double().eval()
    return lm, ("head.weight", "emb.weight"), lm.head, [1, 4, 7, 2, 9, 3, 5]


def _fresh(model, names, toks, mode, skip=()):
    s = STR.StreamingSigma(model, names, 2.0, mode=mode)
    if skip:
        s.skip(list(skip))
    for t in toks:
        s.push(t)
    return s


@pytest.mark.parametrize("mode", ["kv-cache", "recompute"])
@pytest.mark.parametrize("op", ["push", "skip"])
def test_stream_marked_by_an_exception_refuses_until_reset(gpt2, mode, op):
    """After an exception escapes push/skip, push, skip and generate raise StreamStateError
    (a FimTheoryError and RuntimeError naming the exception type and reset()); reset() clears
    the mark and the stream then equals a fresh one (σ, tokens, records)."""
    from fimtheory.errors import FimTheoryError

    model, names, last, toks = _stream_case(gpt2, mode)
    s = STR.StreamingSigma(model, names, 2.0, mode=mode)
    for t in toks[:3]:
        s.push(t)
    handle, count = _fail_once(last, 1, MemoryError("simulated"))
    try:
        with pytest.raises(MemoryError):
            s.push(toks[3]) if op == "push" else s.skip(toks[3:5])
    finally:
        handle.remove()
    assert count[0] == 1
    for call in (lambda: s.push(toks[3]), lambda: s.skip([toks[3]]), lambda: s.generate(1)):
        with pytest.raises(STR.StreamStateError) as info:
            call()
        msg = str(info.value)
        assert "raised MemoryError " in msg and "call reset()" in msg and "inconsistent" in msg
        assert isinstance(info.value, FimTheoryError) and isinstance(info.value, RuntimeError)
    s.reset()
    s.skip([toks[0]])
    for t in toks[1:]:
        s.push(t)
    ref = _fresh(model, names, toks[1:], mode, skip=[toks[0]])
    np.testing.assert_array_equal(s.sigmas, ref.sigmas)
    assert s.tokens == ref.tokens == toks
    assert [r.n_scores for r in s.records] == [r.n_scores for r in ref.records]
    s.generate(2)
    ref.generate(2)
    np.testing.assert_array_equal(s.sigmas, ref.sigmas)


@pytest.mark.parametrize("mode", ["kv-cache", "recompute"])
def test_stream_input_errors_change_nothing(gpt2, mode):
    """Bad ids (also inside a skip list, or not convertible to integers) and pushes past the
    context raise InputError before anything changes."""
    model, names, _, toks = _stream_case(gpt2, mode)
    s = STR.StreamingSigma(model, names, 2.0, mode=mode)
    s.push(toks[0])
    for bad in ([toks[1], -1], [toks[1], "a"], [[1, 2], [3]], "ab"):
        with pytest.raises(InputError):
            s.skip(bad)
    with pytest.raises(InputError, match="integer ids"):
        s.skip([toks[1], "a"])
    if s.max_context is not None:
        with pytest.raises(InputError, match="context"):
            s.skip([toks[1]] * s.max_context)
        with pytest.raises(InputError, match="context"):
            s.generate(s.max_context)
    with pytest.raises(InputError):
        s.push(-1)
    assert s.tokens == [toks[0]]
    for t in toks[1:]:
        s.push(t)
    np.testing.assert_array_equal(s.sigmas, _fresh(model, names, toks, mode).sigmas)
