"""Parameter groups: the score subset θ named by glob patterns over parameter names.

A *group spec* is a string or a sequence of strings; each string is a comma-separated list
of :func:`fnmatch.fnmatchcase` patterns (``*`` matches any run of characters, dots
included; ``?`` one character; ``[...]`` a class) matched against
``module.named_parameters()`` names. A name is in the group when any pattern matches it; a
pattern that matches nothing is an error (a misspelt group is never silently smaller).
The group keeps the module's parameter order (the flattening order of the scores).

Named groups (``@name``, resolved against the model; ``L`` = index of the last block, found
from names ``<prefix>.<L>.<rest>`` with a numeric component):

``@default``
    The last block's MLP: every parameter of the last block whose name has a component
    ``mlp`` (SmolLM2 / Gemma 3: ``gate_proj``, ``up_proj``, ``down_proj``). For models with no
    such component (the textgenrnn LSTM, small classifiers) the module may define
    ``default_param_names()``, which is used instead.
``@last-block``
    Every parameter of the last block (attention, MLP and the block's norms).
``@attention``, ``@mlp``
    Every parameter with a name component ``self_attn`` / ``attn`` / ``attention``, or
    ``mlp`` / ``ffn`` / ``feed_forward``, in every block.
``@embeddings-norms``
    Embeddings (component containing ``embed``) and every ``*norm*.weight`` / ``*norm*.bias``.
``@all``
    The whole model.

Examples
--------
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
>>> select_params(m, "0.*")
('0.weight', '0.bias')
>>> select_params(m, "*.weight")
('0.weight', '2.weight')
>>> select_params(m, "@all")
('0.weight', '0.bias', '2.weight', '2.bias')
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from torch import nn

from fimtheory.errors import InputError, UnknownIdError

NAMED_GROUPS = ("@default", "@last-block", "@attention", "@mlp", "@embeddings-norms", "@all")
DEFAULT_GROUP = "@default"

_ATTN = {"self_attn", "attn", "attention"}
_MLP = {"mlp", "ffn", "feed_forward"}


def split_patterns(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The patterns of a spec (comma-separated strings, or a sequence of them), stripped.

    Raises
    ------
    InputError
        An empty spec or an empty pattern.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"a parameter pattern must be a string, got {type(item).__name__}")
        for p in item.split(","):
            p = p.strip()
            if not p:
                raise InputError(f"empty parameter pattern in {spec!r}")
            out.append(p)
    if not out:
        raise InputError("the parameter group spec is empty")
    return tuple(out)


def block_indices(names: Sequence[str]) -> dict[str, list[int]]:
    """Block prefixes and their indices: ``"model.layers"`` → ``[0, 1, …]`` for names like
    ``model.layers.3.mlp.up_proj.weight`` (the prefix with the most distinct indices first)."""
    found: dict[str, set[int]] = {}
    for n in names:
        parts = n.split(".")
        for i, p in enumerate(parts[:-1]):
            if p.isdigit() and i > 0:
                found.setdefault(".".join(parts[:i]), set()).add(int(p))
                break
    return {k: sorted(v) for k, v in sorted(found.items(), key=lambda kv: -len(kv[1]))}


def last_block_prefix(names: Sequence[str]) -> str:
    """``"<prefix>.<L>."`` of the last block (InputError when the model has no numbered blocks)."""
    blocks = block_indices(names)
    if not blocks:
        raise InputError("the model has no numbered blocks (names like 'layers.3.…'); name the parameters instead")
    prefix, idx = next(iter(blocks.items()))
    return f"{prefix}.{idx[-1]}."


def _components(name: str) -> set[str]:
    return set(name.split("."))


def _named_group(module: nn.Module, group: str, names: list[str]) -> list[str]:
    if group == "@all":
        return list(names)
    if group == "@default":
        if hasattr(module, "default_param_names") and not _has_mlp(names):
            return list(module.default_param_names())
        last = last_block_prefix(names)
        hit = [n for n in names if n.startswith(last) and _components(n) & _MLP]
        if not hit:
            raise InputError(f"the last block ({last}*) has no MLP parameters; name the parameters instead")
        return hit
    if group == "@last-block":
        last = last_block_prefix(names)
        return [n for n in names if n.startswith(last)]
    if group == "@attention":
        return [n for n in names if _components(n) & _ATTN]
    if group == "@mlp":
        return [n for n in names if _components(n) & _MLP]
    if group == "@embeddings-norms":
        norm = re.compile(r"norm[^.]*\.(weight|bias)$")
        return [n for n in names if any("embed" in c for c in n.split(".")) or norm.search(n)]
    raise UnknownIdError(f"unknown parameter group {group!r}; known: {', '.join(NAMED_GROUPS)}")


def _has_mlp(names: Sequence[str]) -> bool:
    return any(_components(n) & _MLP for n in names)


def select_params(module: nn.Module, spec: str | Sequence[str] = DEFAULT_GROUP) -> tuple[str, ...]:
    """Names of the parameters of ``module`` selected by ``spec`` (module order).

    Parameters
    ----------
    module : nn.Module
    spec : str or sequence of str
        Glob patterns and/or named groups (see the module docstring); default ``@default``.

    Raises
    ------
    InputError
        A pattern or group that matches no parameter (the message names it and shows some
        of the model's names), or an empty spec.
    UnknownIdError
        An unknown ``@group``.
    """
    names = [n for n, _ in module.named_parameters()]
    if not names:
        raise InputError("the model has no parameters")
    chosen: set[str] = set()
    for pat in split_patterns(spec):
        if pat.startswith("@"):
            hit = _named_group(module, pat, names)
        else:
            hit = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hit:
            sample = ", ".join(names[:4] + (["…", names[-1]] if len(names) > 5 else names[4:]))
            raise InputError(f"parameter pattern {pat!r} matches no parameter of the model (names: {sample})")
        chosen.update(hit)
    return tuple(n for n in names if n in chosen)


def group_size(module: nn.Module, names: Sequence[str]) -> int:
    """P, the number of scalar parameters in ``names``."""
    params = dict(module.named_parameters())
    return int(sum(params[n].numel() for n in names))


def describe(module: nn.Module, spec: str | Sequence[str] = DEFAULT_GROUP) -> dict:
    """``{"spec", "names", "P"}`` of a group (for report headers)."""
    names = select_params(module, spec)
    return {"spec": list(split_patterns(spec)), "names": list(names), "P": group_size(module, names)}
