"""Exact JSON form of instances (every float as ``float.hex``, so a replay is bit-exact) and the
SHA-256 digest of a stored counterexample's exact inputs (:func:`inputs_digest`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from fimtheory import instances as _inst
from fimtheory.errors import InputError


def _enc(x):
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "iub":
            return {"ndarray": x.astype(int).tolist(), "dtype": str(x.dtype), "shape": list(x.shape)}
        return {
            "ndarray": [float(v).hex() for v in x.astype(float).ravel()],
            "dtype": "float64",
            "shape": list(x.shape),
        }
    if isinstance(x, float | np.floating):
        return {"float": float(x).hex()}
    if isinstance(x, tuple | list):
        return {"seq": [_enc(v) for v in x]}
    if x is None or isinstance(x, bool | int | str):
        return x
    raise InputError(f"cannot serialise {type(x).__name__}")


def _dec(x):
    if isinstance(x, dict):
        if "ndarray" in x:
            shape = tuple(x["shape"])
            if x["dtype"] == "float64":
                return np.array([float.fromhex(v) for v in x["ndarray"]], dtype=float).reshape(shape)
            return np.array(x["ndarray"], dtype=x["dtype"]).reshape(shape)
        if "float" in x:
            return float.fromhex(x["float"])
        if "seq" in x:
            return tuple(_dec(v) for v in x["seq"])
    return x


_TYPES = {
    c.__name__: c
    for c in (
        _inst.MatrixPerturbation,
        _inst.NoiseEnsemble,
        _inst.ScoreInstance,
        _inst.PartitionInstance,
        _inst.DepartureInstance,
        _inst.ParameterEnsemble,
        _inst.ProbabilityInstance,
        _inst.KLPairInstance,
    )
}


def _declared_types() -> dict:
    """``module:qualname`` → class of the instance types that registered claims declare
    (``instance_type=`` of :func:`fimtheory.claim_api.declare_claim`)."""
    from fimtheory.claim_api import instance_types
    from properties.subjects import INSTANCE_TYPES  # instances of claims bound to a torch-model subject

    return {**instance_types(), **INSTANCE_TYPES}


def instance_to_json(inst) -> dict:
    """{'type': name, 'fields': {...}} with floats in hex; any object with A/E falls back to a pair.
    An instance type a registered claim declares is named ``module:qualname``."""
    if dataclasses.is_dataclass(inst) and type(inst).__name__ in _TYPES:
        fields = {f.name: _enc(getattr(inst, f.name)) for f in dataclasses.fields(inst)}
        return {"type": type(inst).__name__, "fields": fields}
    if dataclasses.is_dataclass(inst) and not isinstance(inst, type):
        name = f"{type(inst).__module__}:{type(inst).__qualname__}"
        if _declared_types().get(name) is type(inst):
            fields = {f.name: _enc(getattr(inst, f.name)) for f in dataclasses.fields(inst)}
            return {"type": name, "fields": fields}
    if hasattr(inst, "A") and hasattr(inst, "E"):
        return {"type": type(inst).__name__, "fields": {"A": _enc(np.asarray(inst.A)), "E": _enc(np.asarray(inst.E))}}
    raise InputError(
        f"cannot serialise instance of type {type(inst).__name__}: declare its dataclass as the claim's "
        "instance_type (fimtheory.claim_api.declare_claim)"
    )


def instance_from_json(obj: dict):
    """The instance of an :func:`instance_to_json` record.

    ``type`` names a built-in instance class, the indefinite test pair, or a type a registered
    claim declares (``module:qualname``); only a name with a ``:`` is looked up among the
    declared types, so any other name is refused as unknown without reading the claim registry
    (a claim plugin that cannot be loaded does not change that error).

    Raises
    ------
    InputError
        ``unknown instance type …`` for a name that is none of these (or not a string).
    """
    name = obj.get("type")
    if not isinstance(name, str):  # also an unhashable name, which the lookups below cannot take
        raise InputError(f"unknown instance type {name!r}")
    fields = {k: _dec(v) for k, v in obj.get("fields", {}).items()}
    if name in _TYPES:
        return _TYPES[name](**fields)
    if name == "_IndefinitePair":
        from properties.claim_strategies import _IndefinitePair

        return _IndefinitePair(fields["A"], fields["E"])
    declared = _declared_types().get(name) if isinstance(name, str) and ":" in name else None
    if declared is not None:
        return declared(**fields)
    raise InputError(f"unknown instance type {name!r}")


# --------------------------------------------------------------------------------------
# digest of exact inputs
# --------------------------------------------------------------------------------------

#: Name of the digest algorithm stored with every counterexample.
DIGEST_ALGORITHM = "sha256"


def _canonical(x):
    """Canonical JSON-able form of a serialised value: every float re-encoded as its
    ``float.hex`` (so two spellings of one double coincide and any other change does not),
    integer arrays as ints, with dtype and shape kept."""
    if isinstance(x, dict):
        if "ndarray" in x:
            shape = [int(s) for s in x["shape"]]
            dtype = str(x["dtype"])
            size = 1
            for s in shape:
                size *= s
            vals = list(x["ndarray"]) if dtype == "float64" else np.asarray(x["ndarray"]).reshape(-1).tolist()
            if len(vals) != size:
                raise InputError(f"array of shape {shape} has {len(vals)} entries")
            if dtype == "float64":
                vals = [float.fromhex(v).hex() for v in vals]
            else:
                vals = [int(v) for v in vals]
            return {"ndarray": vals, "dtype": dtype, "shape": shape}
        if "float" in x and len(x) == 1:
            return {"float": float.fromhex(x["float"]).hex()}
        if "seq" in x and len(x) == 1:
            return {"seq": [_canonical(v) for v in x["seq"]]}
        return {str(k): _canonical(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_canonical(v) for v in x]
    if isinstance(x, float):
        return {"float": x.hex()}
    if x is None or isinstance(x, bool | int | str):
        return x
    raise InputError(f"cannot canonicalise {type(x).__name__}")


def canonical_bytes(payload) -> bytes:
    """Byte-exact canonical serialisation of a JSON-able payload of inputs (sorted keys, no
    whitespace, ASCII, floats as ``float.hex``)."""
    return json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def inputs_digest(payload) -> str:
    """SHA-256 (hex) of :func:`canonical_bytes` of ``payload``.

    Raises
    ------
    InputError
        When the payload holds an unparsable float or an array whose entries do not fill
        its shape.
    """
    try:
        return hashlib.sha256(canonical_bytes(payload)).hexdigest()
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise InputError(f"inputs cannot be canonicalised: {type(exc).__name__}: {exc}") from None


def counterexample_inputs(claim_id: str, weakening_id: str, instance_json: dict) -> dict:
    """The inputs a weakening counterexample's digest covers: claim id, weakening id and
    the serialised instance (type and every field)."""
    return {"claim": claim_id, "weakening": weakening_id, "instance": instance_json}
