"""Parameter groups by glob pattern (torch_checks.param_groups)."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fimtheory.errors import InputError, UnknownIdError  # noqa: E402
from torch_checks.param_groups import describe, last_block_prefix, select_params, split_patterns  # noqa: E402


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(4)
        self.self_attn = nn.Linear(4, 4, bias=False)
        self.mlp = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 4))


class _Body(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.embed_tokens = nn.Embedding(10, 4)
        self.layers = nn.ModuleList(_Block() for _ in range(n))
        self.norm = nn.LayerNorm(4)


class _LM(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.model = _Body(n)


NAMES = [n for n, _ in _LM().named_parameters()]

CASES = [
    # (spec, expected names as a predicate over NAMES)
    ("model.layers.2.*", lambda n: n.startswith("model.layers.2.")),
    ("@last-block", lambda n: n.startswith("model.layers.2.")),
    ("@default", lambda n: n.startswith("model.layers.2.mlp.")),
    ("@attention", lambda n: ".self_attn." in n),
    ("@mlp", lambda n: ".mlp." in n),
    ("@embeddings-norms", lambda n: "embed" in n or "norm" in n),
    ("@all", lambda n: True),
    ("*.weight", lambda n: n.endswith(".weight")),
    ("model.layers.1.mlp.*, model.norm.*", lambda n: n.startswith(("model.layers.1.mlp.", "model.norm."))),
    (
        ["model.layers.0.self_attn.weight", "model.layers.[01].mlp.0.*"],
        lambda n: (
            n == "model.layers.0.self_attn.weight" or n.startswith(("model.layers.0.mlp.0.", "model.layers.1.mlp.0."))
        ),
    ),
]


@pytest.mark.parametrize("spec,pred", CASES, ids=[str(c[0]) for c in CASES])
def test_groups_select_what_the_predicate_says_in_module_order(spec, pred):
    got = select_params(_LM(), spec)
    assert list(got) == [n for n in NAMES if pred(n)]
    assert got


def test_size_counts_every_scalar():
    m = _LM()
    d = describe(m, "model.layers.2.mlp.*")
    assert d["P"] == (4 * 8 + 8) + (8 * 4 + 4)


@pytest.mark.parametrize("spec", ["model.layer.2.*", "nothing", "@all, nope.*"])
def test_a_pattern_matching_nothing_is_an_error_naming_it(spec):
    with pytest.raises(InputError, match="matches no parameter"):
        select_params(_LM(), spec)


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_empty_specs_are_errors(spec):
    with pytest.raises(InputError):
        split_patterns(spec)


def test_unknown_named_group():
    with pytest.raises(UnknownIdError, match="@blocks"):
        select_params(_LM(), "@blocks")


def test_models_without_blocks():
    m = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(InputError, match="no numbered blocks"):
        select_params(m, "@last-block")
    assert select_params(m, "@all") == ("0.weight", "0.bias")
    assert last_block_prefix(NAMES) == "model.layers.2."
