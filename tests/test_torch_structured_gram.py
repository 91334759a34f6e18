"""The structured Gram path equals the Gram matrix of the explicit per-sample scores."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[torch]')")

from fimtheory.errors import HypothesesNotMet  # noqa: E402
from torch_checks.engines import gram_matrix, lambda_max, lambda_max_structured, structured_gram  # noqa: E402
from torch_checks.scores import per_sample_scores, per_token_scores  # noqa: E402

EPS = torch.finfo(torch.float64).eps


def _mlp():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    X = torch.randn(9, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    return m, X, y


def _logp(m, X, y):
    return lambda: torch.log_softmax(m(X), -1).gather(-1, y[:, None]).reshape(-1)


@pytest.mark.parametrize("names", [["0.weight", "0.bias", "2.weight", "2.bias"], ["2.weight"], ["0.bias"]])
def test_structured_gram_equals_score_gram_on_an_mlp(names):
    m, X, y = _mlp()
    G = per_sample_scores(m, names, X, y, dtype=torch.float64).G
    K_ref = gram_matrix(G)
    K = structured_gram(m, _logp(m, X, y), names)
    tol = 64 * G.shape[0] * EPS * float(K_ref.abs().max())
    assert float((K - K_ref).abs().max()) <= tol
    assert lambda_max_structured(m, _logp(m, X, y), names).value == pytest.approx(lambda_max(G).value, rel=1e-12)


def test_structured_gram_on_the_byte_lm_last_layer_per_token():
    from torch_checks.models import ByteLM, ByteLMConfig

    torch.manual_seed(1)
    lm = ByteLM(ByteLMConfig.tiny()).double()
    names = list(lm.default_param_names())
    ctx = torch.randint(0, 256, (17,))
    x, y = ctx[:-1], ctx[1:]
    G = per_token_scores(lm, names, x, y, dtype=torch.float64).G

    def logp():
        return torch.log_softmax(lm(x[None]), -1)[0].gather(-1, y[:, None]).reshape(-1)

    K = structured_gram(lm, logp, names, check_rows=4, score_rows=lambda idx: G[idx])
    K_ref = gram_matrix(G)
    assert float((K - K_ref).abs().max()) <= 64 * G.shape[0] * EPS * float(K_ref.abs().max())


def test_structured_gram_detects_mixing_layers():
    """The attention input projection's outputs are mixed across positions by attention: the
    per-token scores are not rank one per layer, and the row check says so instead of
    returning a wrong K."""
    from torch_checks.models import ByteLM, ByteLMConfig

    torch.manual_seed(1)
    lm = ByteLM(ByteLMConfig.tiny()).double()
    first = ["blocks.0.attn.qkv.weight"]
    ctx = torch.randint(0, 256, (17,))
    x, y = ctx[:-1], ctx[1:]
    G = per_token_scores(lm, first, x, y, dtype=torch.float64).G

    def logp():
        return torch.log_softmax(lm(x[None]), -1)[0].gather(-1, y[:, None]).reshape(-1)

    with pytest.raises(HypothesesNotMet, match="not rank one"):
        structured_gram(lm, logp, first, check_rows=8, score_rows=lambda idx: G[idx])


def test_structured_gram_rejects_unsupported_parameters():
    lm = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2)).double()
    with pytest.raises(HypothesesNotMet, match="'1.weight'.*LayerNorm.*nn.Linear"):
        structured_gram(lm, lambda: torch.zeros(1), ["1.weight"])


def test_structured_gram_detects_mixing_layers_by_default():
    """Without score_rows and with the default check, the attention projection is refused."""
    from torch_checks.models import ByteLM, ByteLMConfig

    torch.manual_seed(1)
    lm = ByteLM(ByteLMConfig.tiny()).double()
    ctx = torch.randint(0, 256, (17,))
    x, y = ctx[:-1], ctx[1:]

    def logp():
        return torch.log_softmax(lm(x[None]), -1)[0].gather(-1, y[:, None]).reshape(-1)

    with pytest.raises(HypothesesNotMet, match="blocks.0.attn.qkv.weight.*not rank one"):
        lambda_max_structured(lm, logp, ["blocks.0.attn.qkv.weight"])


def test_structured_lanczos_path_matches_dense():
    m, X, y = _mlp()
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    dense = lambda_max_structured(m, _logp(m, X, y), names)
    krylov = lambda_max_structured(m, _logp(m, X, y), names, dense_max=2)
    assert krylov.method == "structured-gram-lanczos"
    assert krylov.value == pytest.approx(dense.value, rel=1e-9)
