"""Cross-check, on every weight tensor of SmolLM2-135M that check-models quantizes, the suite's
GGUF k-quants (fimtheory/kquants.py) against the ``gguf`` package bit for bit.

    python results/check-models-smollm2-kquant-gguf.py

writes results/check-models-smollm2-kquant-gguf.json. For each scheme of
results/check-models-smollm2-kquant-quick.json (gguf-q4_k-or-q5_0, gguf-q5_k-or-q5_1,
gguf-q6_k-or-q8_0, gguf-q8_0) and each tensor check-models quantizes (the 210 ``nn.Linear``
weights: 30 blocks × q, k, v, o, gate, up, down; it leaves the embedding in full precision and
names it; reference = the dequantized Q4_1 weights of the packaged GGUF, as check-models loads
them):

* the GGUF type llama.cpp stores it in (the k-quant where the rows are whole 256-blocks, else the
  32-block fallback; :func:`fimtheory.kquants.llama_cpp_tensor_type`);
* ``gguf.quants.dequantize`` of the suite's bytes (``kquants.quantize_to_bytes``) equals the
  suite's own decoding (``kquants.dequantize_bytes``) bit for bit, and equals what check-models
  used, ``torch_checks.quantizers.quantize_tensor`` on the float64 weights (widened float32);
* for the 32-block types (Q8_0, Q5_0, Q5_1), which ``gguf`` can also quantize, its bytes equal ours.

Counts of tensors, weights and mismatches per scheme and type, and CPU seconds, go to the JSON.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np
import torch

from fimtheory import kquants as kq
from torch_checks.quantizers import quantize_tensor
from torch_checks.smollm import load_smollm

SCHEMES = ("gguf-q4_k-or-q5_0", "gguf-q5_k-or-q5_1", "gguf-q6_k-or-q8_0", "gguf-q8_0")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check-models-smollm2-kquant-gguf.json")


def main() -> int:
    import gguf

    gt = {
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q5_0": gguf.GGMLQuantizationType.Q5_0,
        "q5_1": gguf.GGMLQuantizationType.Q5_1,
        "q4_k": gguf.GGMLQuantizationType.Q4_K,
        "q5_k": gguf.GGMLQuantizationType.Q5_K,
        "q6_k": gguf.GGMLQuantizationType.Q6_K,
    }
    torch.set_num_threads(1)
    c0, t0 = time.process_time(), time.perf_counter()
    model = load_smollm(dtype=torch.float32)
    seen, tensors = set(), []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, torch.nn.Linear) and isinstance(w, torch.Tensor):
            if id(w) not in seen:
                seen.add(id(w))
                tensors.append((f"{name}.weight", w.detach()))
    out = {"command": "python results/check-models-smollm2-kquant-gguf.py", "gguf": gguf.__name__, "schemes": {}}
    try:
        from importlib.metadata import version

        out["gguf_version"] = version("gguf")
    except Exception:  # pragma: no cover
        out["gguf_version"] = None
    ok_all = True
    for spec in SCHEMES:
        qname = spec[len("gguf-") :]
        by_type: dict[str, dict] = {}
        c1 = time.process_time()
        for _name, w in tensors:
            w32 = w.numpy().astype(np.float32)
            t = kq.llama_cpp_tensor_type(kq.WITH_FALLBACK.get(qname, qname), int(w32.shape[-1]))
            row = by_type.setdefault(
                t,
                {
                    "tensors": 0,
                    "weights": 0,
                    "gguf_dequantize_mismatch": 0,
                    "check_models_mismatch": 0,
                    "gguf_quantize_mismatch": None,
                },
            )
            data = kq.quantize_to_bytes(w32, t)
            ours = kq.dequantize_bytes(data, t).reshape(w32.shape)
            theirs = gguf.quants.dequantize(data, gt[t]).reshape(w32.shape)
            used = quantize_tensor(w.double(), spec).numpy()  # what check-models' quantizer wrote
            row["tensors"] += 1
            row["weights"] += int(w32.size)
            row["gguf_dequantize_mismatch"] += int(np.count_nonzero(ours.view(np.uint32) != theirs.view(np.uint32)))
            row["check_models_mismatch"] += int(np.count_nonzero(used != theirs.astype(np.float64)))
            if t in ("q8_0", "q5_0", "q5_1"):
                with np.errstate(all="ignore"):
                    ref = gguf.quants.quantize(w32, gt[t])
                row["gguf_quantize_mismatch"] = (row["gguf_quantize_mismatch"] or 0) + int(
                    np.count_nonzero(np.asarray(ref).reshape(-1) != data.reshape(-1))
                )
        for row in by_type.values():
            ok_all &= row["gguf_dequantize_mismatch"] == 0 and row["check_models_mismatch"] == 0
            ok_all &= not row["gguf_quantize_mismatch"]
        out["schemes"][spec] = {"types": by_type, "cpu_seconds": time.process_time() - c1}
        print(f"{spec}: {json.dumps(by_type)}", file=sys.stderr, flush=True)
    out["bit_identical"] = bool(ok_all)
    out["tensors"] = len(tensors)
    out["weights"] = int(sum(w.numel() for _, w in tensors))
    out["cpu_seconds"] = time.process_time() - c0
    out["wall_seconds"] = time.perf_counter() - t0
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["environment"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": 1}
    with open(OUT, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote {OUT}: bit_identical = {ok_all}", file=sys.stderr)
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
