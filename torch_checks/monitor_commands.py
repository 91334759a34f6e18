"""``fimtheory monitor calibrate|run``: the σ_t monitor on a model the user brings.

``fimtheory monitor calibrate --model SPEC [--params GLOB ...] --json OUT [--input FILE]
[--contexts M] [--length T] [--window W] [--quantile q] [--statistic mean|median] [--seed N]``
computes λ_base and τ_q on the full-precision model from M contexts of T scored tokens (of
FILE, or of the project's held-out corpus, tokenised with the model's own tokenizer) and writes
them with the σ samples, a distribution-free confidence interval of τ_q, the model identity
(weights SHA-256), the parameter group, the tokenizer and the streaming path
(:func:`torch_checks.streaming.classify_group`).

``fimtheory monitor run --calibration JSON --model SPEC [--prompt TEXT | --input FILE]
[--max-new-tokens N] [--temperature T] [--seed N] [--json-lines] [--fail-on-alert]`` reads the
calibration back (refusing another model or another parameter group: the digests must agree),
pushes the prompt and then generates, printing σ_t per token — one JSON object per line with
``--json-lines`` (``t``, ``token``, ``text``, ``sigma``, ``lambda``, ``alert``, ``n_scores``,
``phase``) — with progress on stderr (a self-overwriting line on a terminal, plain lines
otherwise). Exit 0; with ``--fail-on-alert`` 1 if some σ_t > τ_q; 2 on bad input, one line,
before the work.

SPEC: a Hugging Face model directory, a ``.gguf`` file or ``module:callable``
(:mod:`torch_checks.user_model`). ``add_arguments`` imports no torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from fimtheory.cli import Command, ProgressLines, add_seed_argument, output_file
from fimtheory.errors import InputError

FORMAT = "fimtheory-monitor-calibration"
FORMAT_VERSION = 1
CI_LEVEL = 0.95


def _model_spec(text: str) -> str:
    from .user_model import check_model_spec

    try:
        check_model_spec(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


_model_spec.__name__ = "model spec"


def _readable_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not readable")
    return text


_readable_file.__name__ = "input file"


def _positive_int(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


_positive_int.__name__ = "positive integer"


def _non_negative_int(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


_non_negative_int.__name__ = "non-negative integer"


def _unit_interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {v}")
    return v


_unit_interval.__name__ = "quantile"


def _temperature(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


_temperature.__name__ = "temperature"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(
        dest="monitor_command",
        metavar="STEP",
        parser_class=type(p),
        help="calibrate (→ JSON), run (σ_t per token against a calibration) or bench-streaming",
    )
    c = sub.add_parser("calibrate", help="λ_base and τ_q on the full-precision model → JSON")
    c.add_argument(
        "--model", required=True, type=_model_spec, metavar="SPEC", help="HF directory, .gguf or module:callable"
    )
    c.add_argument(
        "--params",
        nargs="+",
        metavar="GLOB",
        default=None,
        help="parameter group: glob patterns over parameter names or @groups (default @default: last block's MLP)",
    )
    c.add_argument("--json", required=True, type=output_file, metavar="OUT", help="write the calibration here")
    c.add_argument("--input", type=_readable_file, metavar="FILE", help="calibration text (default: held-out corpus)")
    c.add_argument("--contexts", type=_positive_int, default=16, metavar="M", help="calibration contexts (default 16)")
    c.add_argument(
        "--length", type=_positive_int, default=32, metavar="T", help="scored tokens per context (default 32)"
    )
    c.add_argument("--window", type=_positive_int, default=None, metavar="W", help="F_t of the last W scores only")
    c.add_argument("--quantile", type=_unit_interval, default=0.95, metavar="q", help="q of τ_q (default 0.95)")
    c.add_argument("--statistic", choices=("mean", "median"), default="mean", help="λ_base statistic (default mean)")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    add_seed_argument(c, "seed of the context windows")
    r = sub.add_parser("run", help="stream σ_t per generated token against a calibration")
    r.add_argument("--calibration", required=True, type=_readable_file, metavar="JSON", help="from monitor calibrate")
    r.add_argument("--model", required=True, type=_model_spec, metavar="SPEC", help="the model to monitor")
    r.add_argument("--params", nargs="+", metavar="GLOB", default=None, help="must select the calibration's group")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--prompt", metavar="TEXT", help="prompt text (default: the tokenizer's BOS/EOS token)")
    g.add_argument("--input", type=_readable_file, metavar="FILE", help="read the prompt from FILE")
    r.add_argument("--max-new-tokens", type=_non_negative_int, default=32, metavar="N", help="tokens to generate (32)")
    r.add_argument("--temperature", type=_temperature, default=0.0, metavar="T", help="0 = greedy (default)")
    r.add_argument("--mode", choices=("auto", "kv-cache", "recompute"), default="auto", help="score path (auto)")
    r.add_argument("--json-lines", action="store_true", help="one JSON object per token on stdout")
    r.add_argument(
        "--min-scores",
        type=_positive_int,
        default=None,
        metavar="N",
        help="arm alerts from N scores on (default: the calibration's window, else its tokens per context)",
    )
    r.add_argument("--fail-on-alert", action="store_true", help="exit 1 if some σ_t exceeds τ_q")
    r.add_argument("--quiet", action="store_true", help="no progress on stderr")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    add_seed_argument(r, "seed of the sampling (temperature > 0)")
    b = sub.add_parser("bench-streaming", help="measure the streaming push time at t = 64 and 1024 → JSON")
    b.add_argument("--json", required=True, type=output_file, metavar="OUT", help="e.g. results/streaming.json")
    b.add_argument("--quick", action="store_true", help="tiny model, t = 16 and 128 only (a smoke run)")
    add_seed_argument(b, "seed of the models and the sampling")


# --------------------------------------------------------------------------- calibration


def quantile_ci(sigmas, q: float, level: float = CI_LEVEL) -> dict:
    """Distribution-free confidence interval of the q-quantile from order statistics.

    For m i.i.d. samples, [X_(l), X_(u)] covers the q-quantile with probability
    F(u−1) − F(l−1), F the Binomial(m, q) CDF; l, u are chosen as near the centre as possible
    with coverage ≥ ``level``. When m is too small for that, the bound that cannot be reached
    is None and ``note`` says how many contexts are needed.
    """
    import numpy as np
    from scipy.stats import binom

    x = np.sort(np.asarray(sigmas, dtype=np.float64))
    m = x.size
    alpha = 1 - level
    # lower: largest l with P(X_(l) <= ξ) = 1 - F(l-1) >= 1 - α/2; upper: smallest u with F(u-1) >= 1 - α/2
    ks = np.arange(0, m + 1)
    cdf = binom.cdf(ks, m, q)  # P(B <= k)
    lower_ok = [l for l in range(1, m + 1) if 1 - cdf[l - 1] >= 1 - alpha / 2]
    upper_ok = [u for u in range(1, m + 1) if cdf[u - 1] >= 1 - alpha / 2]
    lo = float(x[max(lower_ok) - 1]) if lower_ok else None
    hi = float(x[min(upper_ok) - 1]) if upper_ok else None
    note = None
    if hi is None:
        need = int(math.ceil(math.log(alpha / 2) / math.log(q))) if 0 < q < 1 else None
        note = (
            f"too few contexts for an upper bound at level {level} (needs m >= {need})" if need else "q = 1: no bound"
        )
    elif lo is None:
        note = f"too few contexts for a lower bound at level {level}"
    return {
        "level": level,
        "lower": lo,
        "upper": hi,
        "method": "order statistics (distribution-free, two-sided, Binomial(m, q) coverage)",
        "m": int(m),
        "note": note,
    }


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def _calibrate(args) -> int:
    import numpy as np
    import torch

    from fimtheory.monitor import calibration_threshold

    from . import param_groups as PG
    from .device import resolve_device
    from .monitor import context_lambda_max
    from .streaming import classify_group
    from .user_model import calibration_tokens, load_user_model

    text = _read_text(args.input) if args.input else None
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    prog = ProgressLines("monitor calibrate", interval=10.0)
    t0 = time.perf_counter()
    um = load_user_model(args.model, device=device)
    names = um.select(args.params)
    P = PG.group_size(um.module, names)
    ctx = calibration_tokens(um, args.contexts, args.length + 1, seed=args.seed, text=text)
    prog.step(
        f"loaded {um.identity['class']} ({um.identity['n_parameters']:,} parameters), "
        f"θ: {len(names)} tensors, P = {P:,}"
    )
    mode, reason = classify_group(um.module, names, ctx[0][: min(8, ctx.shape[1])])
    prog.step(f"streaming path: {mode} ({reason})")
    lams = []
    for i, c in enumerate(ctx):
        lams.append(context_lambda_max(um.module, c, names, window=args.window))
        prog.step(f"context {i + 1}/{len(ctx)}: Λ = {lams[-1]:.6g}")
    lams = np.asarray(lams)
    base = float(np.mean(lams) if args.statistic == "mean" else np.median(lams))
    if not base > 0:
        raise InputError(f"λ_base = {base!r} is not positive: every score is zero for this group")
    sigmas = lams / base
    tau = calibration_threshold(sigmas, args.quantile)
    out = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": um.identity,
        "params": {"spec": list(args.params or [PG.DEFAULT_GROUP]), "names": list(names), "P": int(P)},
        "tokenizer": um.tokenizer.describe() if um.tokenizer else None,
        "contexts": {
            "m": int(len(ctx)),
            "scored_tokens": int(args.length),
            "source": os.path.abspath(args.input) if args.input else "held-out corpus (torch_checks.data)",
            "seed": int(args.seed),
        },
        "window": args.window,
        "statistic": args.statistic,
        "quantile": args.quantile,
        "lambda_base": base,
        "tau_q": tau,
        "tau_q_ci": quantile_ci(sigmas, args.quantile),
        "sigmas": sigmas.tolist(),
        "lambdas": lams.tolist(),
        "units": "λ in nats² per θ-unit²; σ = Λ/λ_base dimensionless",
        "method": "Λ = λ_max of the dense float64 Gram of each context's per-token scores (eigvalsh)",
        "streaming": {"mode": mode, "reason": reason},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    prog.close(f"done in {out['seconds']} s")
    ci = out["tau_q_ci"]
    print(
        f"λ_base = {base:.6g} ({args.statistic} of {len(ctx)} contexts × {args.length} tokens), "
        f"τ_{args.quantile:g} = {tau:.6g} (95% CI [{_fmt(ci['lower'])}, {_fmt(ci['upper'])}]), "
        f"P = {P:,}, streaming {mode}; wrote {args.json}"
    )
    return 0


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.4g}"


# --------------------------------------------------------------------------- run


def read_calibration(path: str) -> dict:
    """The calibration JSON, checked (format, fields, finite positive λ_base). Raises InputError."""
    try:
        with open(path, encoding="utf-8") as f:
            cal = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--calibration {path!r}: not a readable JSON file ({exc})") from None
    if not isinstance(cal, dict) or cal.get("format") != FORMAT:
        raise InputError(f"--calibration {path!r}: not a 'fimtheory monitor calibrate' file")
    if cal.get("version") != FORMAT_VERSION:
        raise InputError(f"--calibration {path!r}: version {cal.get('version')!r}, expected {FORMAT_VERSION}")
    for key in ("model", "params", "lambda_base", "tau_q", "window"):
        if key not in cal:
            raise InputError(f"--calibration {path!r}: missing {key!r}")
    lb, tau = cal["lambda_base"], cal["tau_q"]
    if not (isinstance(lb, (int, float)) and math.isfinite(lb) and lb > 0):
        raise InputError(f"--calibration {path!r}: lambda_base {lb!r} is not positive and finite")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau)):
        raise InputError(f"--calibration {path!r}: tau_q {tau!r} is not finite")
    if not isinstance(cal["model"], dict) or not cal["model"].get("weights_sha256"):
        raise InputError(f"--calibration {path!r}: no model digest")
    if not isinstance(cal["params"], dict) or not cal["params"].get("names"):
        raise InputError(f"--calibration {path!r}: no parameter group")
    return cal


def _run(args) -> int:
    import torch

    from .device import resolve_device
    from .streaming import StreamingSigma
    from .user_model import load_user_model

    cal = read_calibration(args.calibration)
    text = _read_text(args.input) if args.input else args.prompt
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    um = load_user_model(args.model, device=device)
    want = cal["model"]["weights_sha256"]
    if um.digest != want:
        raise InputError(
            f"the calibration was made on a different model: weights sha256 {want[:16]}… in "
            f"{args.calibration}, {um.digest[:16]}… for {args.model}; calibrate this model first"
        )
    names = tuple(cal["params"]["names"])
    if args.params is not None and tuple(um.select(args.params)) != names:
        raise InputError(
            f"--params selects {list(um.select(args.params))}, but the calibration's group is {list(names)}"
        )
    known = {n for n, _ in um.module.named_parameters()}
    missing = [n for n in names if n not in known]
    if missing:
        raise InputError(f"the calibration's parameters {missing} are not in the model")
    if text is not None:
        prompt = um.encode(text)
    else:
        start = None
        if um.tokenizer is not None:
            start = getattr(um.tokenizer.tok, "bos_token_id", None)
            start = start if isinstance(start, int) else um.tokenizer.eos_token_id
        if start is None:
            raise InputError("give --prompt or --input (the model has no BOS/EOS token to start from)")
        prompt = torch.tensor([start])
    # σ_t is the calibrated statistic once F_t has as many scores as a calibration context
    # (or the window): alerts are armed from there on
    arm = cal["window"] or int(cal.get("contexts", {}).get("scored_tokens") or 1)
    if args.min_scores is not None:
        arm = args.min_scores
    stream = StreamingSigma(
        um.module,
        names,
        cal["lambda_base"],
        threshold=cal["tau_q"],
        min_scores=arm,
        window=cal["window"],
        mode=args.mode,
    )
    stream._check_context(int(prompt.numel()) + args.max_new_tokens)
    prog = ProgressLines("monitor run", interval=5.0, enabled=not args.quiet)
    prog.step(
        f"{um.identity['class']}, θ = {len(names)} tensors, λ_base {cal['lambda_base']:.6g}, "
        f"τ {cal['tau_q']:.6g}, window {cal['window']}, alerts from {arm} scores, path {stream.mode}"
    )
    alerts = 0
    out = sys.stdout

    def emit(rec, phase):
        nonlocal alerts
        alerts += int(rec.alert)
        sig = None if math.isnan(rec.sigma) else rec.sigma
        if args.json_lines:
            obj = {
                "t": rec.t,
                "token": rec.token,
                "text": um.decode([rec.token]),
                "sigma": sig,
                "lambda": None if math.isnan(rec.lam) else rec.lam,
                "alert": rec.alert,
                "armed": rec.n_scores >= arm,
                "n_scores": rec.n_scores,
                "phase": phase,
            }
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            out.flush()
        msg = f"t={rec.t} σ={'—' if sig is None else f'{sig:.4g}'} alerts={alerts}"
        if rec.alert:
            prog.step(f"ALERT {msg} (τ {cal['tau_q']:.4g})")
        else:
            prog.tick(msg) if not prog.tty else prog.step(msg)

    for tok in prompt.tolist():
        stream.push(tok)
        emit(stream.records[-1], "prompt")
    eos = um.tokenizer.eos_token_id if um.tokenizer is not None else None
    stream.generate(
        args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        eos=eos,
        on_token=lambda rec: emit(rec, "generated"),
    )
    armed = [r.sigma for r in stream.records if r.n_scores >= arm and not math.isnan(r.sigma)]
    top = f"{max(armed):.6g}" if armed else f"— (fewer than {arm} scores)"
    gen_ids = stream.tokens[prompt.numel() :]
    prog.close(f"{len(stream.tokens)} tokens, max armed σ {top}, {alerts} alert(s)")
    if not args.json_lines:
        last = stream.records[-1].sigma if stream.records else float("nan")
        print(f"generated: {um.decode(gen_ids)!r}")
        print(
            f"tokens {len(stream.tokens)} (prompt {prompt.numel()}), σ_t last {last:.6g}, max σ_t with >= {arm} "
            f"scores {top}, τ {cal['tau_q']:.6g}, alerts {alerts}, path {stream.mode}, "
            f"Lanczos fallbacks {stream.fallbacks}"
        )
    return 1 if (args.fail_on_alert and alerts) else 0


# --------------------------------------------------------------------------- benchmark

BENCH_MODELS = {
    # GPT-2-shaped Hugging Face models built from a config (random weights, seeded)
    "tiny": {"vocab_size": 256, "n_embd": 64, "n_layer": 2, "n_head": 2},
    "gpt2-small-shaped": {"vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12},
}


def _bench_model(name: str, n_positions: int, seed: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_positions=n_positions, bos_token_id=0, eos_token_id=0, **BENCH_MODELS[name])
    return GPT2LMHeadModel(cfg).double().eval()


def _code_version() -> dict:
    """The git commit of the working tree and whether the measured modules differ from it."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "streaming.py", "monitor_commands.py", "monitor.py"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": head.stdout.strip() or None, "measured_modules_modified": bool(dirty.stdout.strip())}


def _bench(args) -> int:
    import platform

    import torch

    from fimtheory.errors import require

    from . import param_groups as PG
    from .streaming import measure_stream, validate_stream

    require("transformers", "monitor bench-streaming", "torch")
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    code = _code_version()  # at the start: the code that runs
    prog = ProgressLines("bench-streaming", interval=10.0)
    at = (16, 128) if args.quick else (64, 1024)
    n_tok = at[-1] + 16
    runs = [("tiny", "@default", None), ("tiny", "@default", 64), ("tiny", "transformer.h.0.mlp.*", 16)]
    if not args.quick:
        runs += [("gpt2-small-shaped", "@default", None), ("gpt2-small-shaped", "@default", 64)]
    models: dict = {}
    out_runs = []
    for name, group, window in runs:
        if name not in models:
            models[name] = _bench_model(name, n_tok + 64, args.seed)
        m = models[name]
        names = PG.select_params(m, group)
        prog.step(f"{name} {group} window {window}: {n_tok} tokens")
        r = measure_stream(m, names, n_tokens=n_tok, at=at, window=window, seed=args.seed, progress=prog.tick)
        r.update(model=name, group=group)
        out_runs.append(r)
        prog.step(f"{name} {group} window {window}: {r['mode']}, ratio t={at[-1]}/t={at[0]} = {r['ratio']:.3f}")
    tiny = models["tiny"]
    checks = []
    for group, window, n in (("@default", None, 160), ("@default", 16, 160), ("transformer.h.0.mlp.*", None, 48)):
        prog.step(f"validate {group} window {window} against the dense full-prefix Gram ({n} tokens)")
        v = validate_stream(tiny, PG.select_params(tiny, group), n_tokens=n, window=window, seed=args.seed)
        v.update(model="tiny", group=group)
        checks.append(v)
    out = {
        "what": (
            "milliseconds per StreamingSigma.push (one token: model forward with the KV cache + score, then the "
            "Gram column and warm Lanczos), median over 16 pushes around each t, CPU time of the process (ratio) "
            "and wall clock (ratio_wall); GPT-2-shaped Hugging Face models built from a config (random weights), "
            "float64, torch threads 1, CPU"
        ),
        "command": "fimtheory monitor bench-streaming --json results/streaming.json"
        + (" --quick" if args.quick else ""),
        "seed": args.seed,
        "code": code,
        "quick": bool(args.quick),
        "target": f"push time ratio t={at[-1]} / t={at[0]} <= 1.5 for position-wise groups",
        "models": {
            k: {**BENCH_MODELS[k], "n_parameters": sum(p.numel() for p in m.parameters())} for k, m in models.items()
        },
        "runs": out_runs,
        "validation": checks,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    prog.close("done")
    for r in out_runs:
        a, b = r["at"][0], r["at"][-1]
        print(
            f"{r['model']:<18} {r['group']:<22} window {str(r['window']):>4} {r['mode']:<9} "
            f"t={a['t']}: {a['median_push_cpu_ms']:.2f} ms (model {a['median_model_cpu_ms']:.2f}), "
            f"t={b['t']}: {b['median_push_cpu_ms']:.2f} ms (model {b['median_model_cpu_ms']:.2f}), "
            f"ratio {r['ratio']:.3f} (CPU time; wall {r['ratio_wall']:.3f}); the model's own cached forward "
            f"{a.get('bare_forward_cpu_ms', float('nan')):.2f} → {b.get('bare_forward_cpu_ms', float('nan')):.2f} ms, "
            f"monitor overhead ratio {r['ratio_monitor_overhead'] or float('nan'):.3f}"
        )
    for v in checks:
        print(f"validation {v['group']} window {v['window']}: max rel error {v['max_rel_error']:.2e} ({v['mode']})")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    from fimtheory.errors import require

    if args.monitor_command is None:
        raise InputError("monitor needs a step: calibrate or run")
    require("torch", "monitor", "torch")
    if args.monitor_command == "calibrate":
        return _calibrate(args)
    if args.monitor_command == "bench-streaming":
        return _bench(args)
    return _run(args)


COMMAND = Command(
    "monitor",
    "calibrate the σ_t monitor on your model (HF directory, GGUF, factory) and stream σ_t per generated token",
    _add_arguments,
    _run_command,
)


def streaming_table(res: dict) -> str:
    """The markdown table of docs/byo_model.md, rendered from results/streaming.json."""
    names = {
        "gpt2-small-shaped": "GPT-2-small-shaped (124M)",
        "tiny": "tiny GPT-2 (n_embd 64, 2 layers)",
    }
    groups = {"@default": "last block MLP", "transformer.h.0.mlp.*": "block 0 MLP (general)"}
    order = sorted(res["runs"], key=lambda r: (r["model"] != "gpt2-small-shaped", r["mode"] != "kv-cache"))
    lines = [
        "| model, group | window | path | push at t=64 | push at t=1024 | ratio "
        "| model's own cached forward, 64 → 1024 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in order:
        a, b = r["at"][0], r["at"][-1]

        def ms(x):
            return f"{x:.3g} ms"

        lines.append(
            f"| {names.get(r['model'], r['model'])}, {groups.get(r['group'], r['group'])} | "
            f"{r['window'] if r['window'] else 'none'} | {r['mode']} | {ms(a['median_push_cpu_ms'])} | "
            f"{ms(b['median_push_cpu_ms'])} | {r['ratio']:.3f} | "
            f"{a['bare_forward_cpu_ms']:.3g} → {b['bare_forward_cpu_ms']:.3g} ms |"
        )
    return "\n".join(lines)
