"""Bring your own model (torch_checks.user_model): Hugging Face directories (GPT-2 with Conv1D,
Llama), a GGUF file and factories load in eval mode with their own tokenizer; the loaded model
computes the same logits as the model that was saved (float64 reference); digests identify the
weights; bad specs, training mode and patterns matching nothing are refused with clear errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("transformers", reason="the user-model loaders need transformers")

from fimtheory.errors import InputError  # noqa: E402
from tests import byo_models as B  # noqa: E402
from torch_checks.scores import _logits  # noqa: E402
from torch_checks.user_model import check_model_spec, is_model_spec, load_user_model  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    out = {
        "gpt2": B.save_hf(B.gpt2_model(), str(root / "gpt2")),
        "llama": B.save_hf(B.llama_model(), str(root / "llama")),
        "gpt2-other": B.save_hf(B.gpt2_model(seed=1), str(root / "gpt2-other")),
        "no-tokenizer": B.save_hf(B.gpt2_model(), str(root / "no-tokenizer"), tokenizer=False),
    }
    pytest.importorskip("gguf")
    out["gguf"] = B.write_llama_gguf(B.llama_model(), str(root / "tiny-llama.gguf"))
    return out


IDS = torch.tensor([[5, 17, 42, 99, 250, 3, 0, 7]])


@pytest.mark.parametrize("which, ref", [("gpt2", B.gpt2_model), ("llama", B.llama_model)])
@torch.no_grad()
def test_hf_directory_loads_same_model(dirs, which, ref):
    um = load_user_model(dirs[which])
    assert um.source == "hf-directory" and not um.module.training
    assert all(p.dtype == torch.float64 for p in um.module.parameters())
    want = _logits(ref().double()(IDS))
    got = _logits(um.module(IDS))
    assert torch.allclose(got, want, rtol=0, atol=1e-12 * float(want.abs().max()))
    # the model's own tokenizer: the ids of the trained BPE, decoding back to the text
    ids = um.encode("The quick brown fox")
    assert ids.dtype == torch.int64 and um.decode(ids.tolist()) == "The quick brown fox"
    assert ids.tolist() == B.tiny_tokenizer().encode("The quick brown fox")


@torch.no_grad()
def test_digest_identifies_weights(dirs):
    a, b = load_user_model(dirs["gpt2"]), load_user_model(dirs["gpt2"])
    c = load_user_model(dirs["gpt2-other"])
    assert a.digest == b.digest and a.digest != c.digest and len(a.digest) == 64
    assert a.identity["config_sha256"] and a.identity["dtype_loaded"] == "torch.float32"
    # the digest is of the weights as loaded, not of the float64 copy used for the scores
    f32 = load_user_model(dirs["gpt2"], dtype=torch.float32)
    assert f32.digest == a.digest


@torch.no_grad()
def test_gguf_matches_the_hf_llama(dirs):
    um = load_user_model(dirs["gguf"])
    assert um.source == "gguf" and not um.module.training
    want = _logits(B.llama_model().double()(IDS))
    got = _logits(um.module(IDS))
    # F32 tensors in the file, the same weights; transformers' LlamaRMSNorm normalises in float32
    # even for a float64 model (measured difference 2.6e-8), the project's Llama in float64
    assert torch.allclose(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))
    assert not torch.allclose(got, -want, rtol=0, atol=1e-2)
    assert um.encode("The quick brown fox").tolist() == B.tiny_tokenizer().encode("The quick brown fox")
    assert um.select(None) == tuple(f"model.layers.1.mlp.{k}_proj.weight" for k in ("gate", "up", "down"))


@torch.no_grad()
def test_factories(dirs):
    um = load_user_model("tests.byo_models:factory_gpt2")
    assert um.source == "factory" and um.tokenizer is not None
    assert um.encode("fox").tolist() == B.tiny_tokenizer().encode("fox")
    plain = load_user_model("tests/byo_models.py:factory_plain")
    assert plain.identity["class"].endswith("ByteMLP") and plain.tokenizer is None
    with pytest.raises(InputError, match="no tokenizer"):
        plain.encode("text")
    with pytest.raises(InputError, match="training mode"):
        load_user_model("tests.byo_models:factory_training_mode")
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        load_user_model("tests.byo_models:factory_not_a_module")
    with pytest.raises(InputError, match="has no attribute"):
        load_user_model("tests.byo_models:no_such_factory")


@torch.no_grad()
def test_no_tokenizer_directory(dirs):
    um = load_user_model(dirs["no-tokenizer"])
    assert um.tokenizer is None
    with pytest.raises(InputError, match="no tokenizer"):
        um.encode("x")


@pytest.mark.parametrize(
    "spec, match",
    [
        ("/no/such/dir/", "not a Hugging Face model directory"),
        ("missing.gguf", "does not exist"),
        ("no_such_module_xyz:make", "cannot be found"),
        ("tests/none.py:make", "does not exist"),
        ("pyproject.toml", "not a .gguf file"),
        ("", "empty"),
    ],
)
@torch.no_grad()
def test_bad_specs(spec, match):
    with pytest.raises(InputError, match=match):
        check_model_spec(spec)


@torch.no_grad()
def test_directory_without_config_or_weights(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        check_model_spec(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="no \\*.safetensors"):
        check_model_spec(str(tmp_path))


@torch.no_grad()
def test_is_model_spec():
    assert is_model_spec("./model") and is_model_spec("a.gguf") and is_model_spec("pkg.mod:fn")
    assert not is_model_spec("byte-lm") and not is_model_spec("smollm2")


@torch.no_grad()
def test_parameter_groups(dirs):
    um = load_user_model(dirs["gpt2"])
    assert um.select(None) == tuple(
        f"transformer.h.1.mlp.{m}.{r}" for m in ("c_fc", "c_proj") for r in ("weight", "bias")
    )
    assert um.select(["transformer.h.0.attn.c_attn.*"]) == (
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_attn.bias",
    )
    # lm_head.weight is tied to the input embedding: selected under the embedding's name
    assert um.select(["lm_head.weight"]) == ("transformer.wte.weight",)
    with pytest.raises(InputError, match="matches no parameter"):
        um.select(["transformer.h.9.*"])
    plain = load_user_model("tests.byo_models:factory_plain")
    with pytest.raises(InputError, match="no numbered blocks"):
        plain.select(None)


@torch.no_grad()
def test_check_models_takes_a_user_model(dirs, capsys):
    """check-models --model PATH: the user model is prepared like a registry model (float64,
    @default group, held-out windows tokenised with its own tokenizer); a bad path is exit 2."""
    from fimtheory.cli import main
    from torch_checks import checks as C

    lm = C.load_for_checks(dirs["llama"], C.get_profile("quick"), torch.device("cpu"))
    assert lm.kind == "lm" and lm.param_names == load_user_model(dirs["llama"]).select(None)
    assert lm.header["P"] == 3 * 32 * 64
    assert lm.fim_data.dtype == torch.int64 and lm.fim_data.shape[1] == 33
    assert int(lm.fim_data.max()) < B.VOCAB
    assert all(p.dtype == torch.float64 for p in lm.module.parameters())
    rc = main(["check-models", "--model", "/no/such/model/"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "not a Hugging Face model directory" in err
