"""Base models from local files (soberan.basemodel): a GGUF the test writes with the `gguf`
package is imported into the workspace as an HF checkpoint with the same outputs, recorded in the
ledger with its hash, architecture, size, quantization and license; bad files are refused by
name, and nothing is half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soberan.basemodel import BaseModelError, inspect_gguf, resolve
from soberan.policy import PolicyError

torch.set_num_threads(1)


def tiny_llama(tmp: Path):
    """A one-layer Llama (width 64, 4 heads, 2 KV heads) and a byte-level BPE, in HF form."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from soberan.train.model import build_model, llama_config

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["대한민국은 민주공화국이다", "the court shall decide"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    cfg = llama_config(1, len(fast), 32, tie_embeddings=False, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    cfg.num_key_value_heads = 2
    cfg.num_attention_heads = 4
    cfg.head_dim = 16
    model = build_model(cfg, seed=3)
    return model, fast, tok


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf), which transformers undoes on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, model, tok, *, arch: str = "llama", license: str | None = "apache-2.0",
               bad_quant: bool = False) -> Path:
    import gguf

    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("Tiny Test Llama")
    if license:
        w.add_license(license)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(float(getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in ("<s>", "</s>") else 1 for t, _ in vocab])
    merges = json.loads(tok.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        names.update({p + "input_layernorm.weight": f"blk.{i}.attn_norm.weight",
                      p + "self_attn.q_proj.weight": f"blk.{i}.attn_q.weight",
                      p + "self_attn.k_proj.weight": f"blk.{i}.attn_k.weight",
                      p + "self_attn.v_proj.weight": f"blk.{i}.attn_v.weight",
                      p + "self_attn.o_proj.weight": f"blk.{i}.attn_output.weight",
                      p + "post_attention_layernorm.weight": f"blk.{i}.ffn_norm.weight",
                      p + "mlp.gate_proj.weight": f"blk.{i}.ffn_gate.weight",
                      p + "mlp.up_proj.weight": f"blk.{i}.ffn_up.weight",
                      p + "mlp.down_proj.weight": f"blk.{i}.ffn_down.weight"})
    for hf, name in names.items():
        t = sd[hf]
        if name.endswith("attn_q.weight"):
            t = _permute(t, c.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            t = _permute(t, c.num_key_value_heads)
        if bad_quant and name == "output_norm.weight":
            # Q8_1 blocks: a type the gguf package lists but cannot dequantize.
            n, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
            w.add_tensor(name, np.zeros(t.size // n * size, dtype=np.uint8),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_1)
            continue
        w.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny_gguf(tmp_path):
    model, fast, tok = tiny_llama(tmp_path)
    return write_gguf(tmp_path / "tiny.gguf", model, tok), model, fast


def test_gguf_imports_as_the_same_model_and_is_recorded(workspace, tiny_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, model, fast = tiny_gguf
    info = inspect_gguf(path)
    assert info["architecture"] == "llama" and info["license"] == "Apache-2.0"
    assert info["quantization"].startswith("F32") and info["params"] == sum(p.numel() for p in model.parameters())
    folder = resolve(workspace, str(path))
    assert folder.parent == workspace.root / "base" and (folder / "config.json").exists()
    hf = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    text = "대한민국은 민주공화국이다"
    assert tok(text)["input_ids"] == fast(text)["input_ids"]
    ids = torch.tensor([fast(text)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids).logits, atol=1e-5)
    rec = workspace.ledger.latest_artifact("base", "base_model")
    m = rec["meta"]
    assert rec["path"] == workspace.ledger.rel(folder)
    assert m["architecture"] == "llama" and m["license"] == "Apache-2.0" and m["source_file"] == str(path)
    assert len(m["source_sha256"]) == 64 and m["params"] == info["params"]
    # The second time: reused, not converted or recorded again.
    n = len(workspace.ledger.records())
    assert resolve(workspace, str(path)) == folder and len(workspace.ledger.records()) == n
    assert workspace.ledger.verify() == []


def test_truncated_gguf_is_refused_by_name_and_nothing_is_written(workspace, tiny_gguf):
    path, _, _ = tiny_gguf
    cut = path.with_name("cut.gguf")
    cut.write_bytes(path.read_bytes()[: path.stat().st_size - 1000])
    with pytest.raises(BaseModelError, match="cut.gguf.*truncated"):
        resolve(workspace, str(cut))
    header_only = path.with_name("head.gguf")
    header_only.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BaseModelError, match="head.gguf"):
        resolve(workspace, str(header_only))
    assert not (workspace.root / "base").exists() or not any((workspace.root / "base").iterdir())
    assert workspace.ledger.latest_artifact("base", "base_model") is None


def test_unsupported_architecture_and_quantization_are_refused(workspace, tmp_path):
    model, _, tok = tiny_llama(tmp_path)
    odd = write_gguf(tmp_path / "odd.gguf", model, tok, arch="rwkv6")
    with pytest.raises(BaseModelError, match="odd.gguf.*architecture 'rwkv6'"):
        resolve(workspace, str(odd))
    q = write_gguf(tmp_path / "q81.gguf", model, tok, bad_quant=True)
    with pytest.raises(BaseModelError, match="q81.gguf.*quantization Q8_1"):
        resolve(workspace, str(q))
    assert workspace.ledger.latest_artifact("base", "base_model") is None


def test_base_model_license_is_checked_against_the_policy(workspace, tmp_path):
    model, _, tok = tiny_llama(tmp_path)
    nc = write_gguf(tmp_path / "nc.gguf", model, tok, license="cc-by-nc-4.0")
    with pytest.raises(PolicyError, match="license CC-BY-NC-4.0 is not allowed"):
        resolve(workspace, str(nc))
    silent = write_gguf(tmp_path / "silent.gguf", model, tok, license=None)
    with pytest.raises(BaseModelError, match="no license declared.*base_model_license"):
        resolve(workspace, str(silent))
    assert resolve(workspace, str(silent), license="MIT").is_dir()  # declared in the config instead
    assert workspace.ledger.latest_artifact("base", "base_model")["meta"]["license"] == "MIT"


def test_a_tokenizer_that_does_not_fit_the_base_is_caught_before_training(workspace, tiny_gguf, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from soberan.train.pretrain import check_tokenizer_fits

    path, _, fast = tiny_gguf
    folder = resolve(workspace, str(path))
    check_tokenizer_fits(fast, tmp_path, str(folder))  # its own tokenizer fits
    other = Tokenizer(models.BPE())
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    other.train_from_iterator(["completely different text"] * 10, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    wrong = PreTrainedTokenizerFast(tokenizer_object=other, bos_token="<s>", eos_token="</s>")
    with pytest.raises(ValueError, match="does not match base model|do not fit|another model"):
        check_tokenizer_fits(wrong, tmp_path, str(folder))


def test_builtin_base_is_pinned(workspace):
    from soberan.basemodel import BUILTIN, builtin_file

    b = BUILTIN["smollm2-135m-instruct"]
    try:
        f = builtin_file(b)
    except BaseModelError as e:
        pytest.skip(str(e))
    assert f.name.endswith(".gguf") and b.license == "Apache-2.0"


@pytest.mark.slow  # the stages end to end on a GGUF base
def test_a_gguf_base_is_adapted_through_the_stages(workspace, tiny_gguf):
    """tokenizer (keep the GGUF's own) → train (continued pretraining of the imported base): the
    GGUF is converted once, and the model's ledger record names the import."""
    from test_heldout import corpus

    from soberan.documents import write_parquet_atomic
    from soberan.tokenizer import run as tokenizer_run
    from soberan.train import run as train_run
    from soberan.workspace import Workspace, set_keys

    path, _, _ = tiny_gguf
    root = workspace.root
    write_parquet_atomic(corpus(6, 0, lines=20), root / "curated" / "part-0.parquet")
    workspace.ledger.record_artifact(stage="curate", kind="corpus", path=root / "curated")
    cfg = root / "soberan.toml"
    text = set_keys(cfg.read_text(), "tokenizer", {"mode": '"keep"', "base": f'"{path}"'})
    text = text.replace("[train]\n", f'[train]\nbase_model = "{path}"\nseq_len = 32\nmicro_batch = 2\nmax_steps = 2\n'
                        "warmup_steps = 0\neval_every = 2\ncheckpoint_every = 2\neval_max_bytes = 1000\ntensorboard = false\n", 1)
    cfg.write_text(text)
    ws = Workspace.open(root)
    tokenizer_run(ws)
    s = train_run(ws)
    imports = ws.ledger.artifacts(stage="base", kind="base_model")
    assert len(imports) == 1  # converted once, used by both stages
    model = ws.ledger.latest_artifact("train", "model")
    assert model["meta"]["base_model"] == str(root / imports[0]["path"])
    assert s.steps == 2 and set(s.bpb_end) == {"ko"}
