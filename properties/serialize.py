"""Exact JSON form of instances: every float as ``float.hex`` so a replay is bit-exact."""

from __future__ import annotations

import dataclasses

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
    )
}


def instance_to_json(inst) -> dict:
    """{'type': name, 'fields': {...}} with floats in hex; any object with A/E falls back to a pair."""
    if dataclasses.is_dataclass(inst) and type(inst).__name__ in _TYPES:
        fields = {f.name: _enc(getattr(inst, f.name)) for f in dataclasses.fields(inst)}
        return {"type": type(inst).__name__, "fields": fields}
    if hasattr(inst, "A") and hasattr(inst, "E"):
        return {"type": type(inst).__name__, "fields": {"A": _enc(np.asarray(inst.A)), "E": _enc(np.asarray(inst.E))}}
    raise InputError(f"cannot serialise instance of type {type(inst).__name__}")


def instance_from_json(obj: dict):
    name = obj.get("type")
    fields = {k: _dec(v) for k, v in obj.get("fields", {}).items()}
    if name in _TYPES:
        return _TYPES[name](**fields)
    if name == "_IndefinitePair":
        from properties.claim_strategies import _IndefinitePair

        return _IndefinitePair(fields["A"], fields["E"])
    raise InputError(f"unknown instance type {name!r}")
