"""Which model is served, and loading it without touching the network.

The served model is a workspace's newest `train`/`model` artifact (an HF checkpoint with its
tokenizer) or a folder given with `--model`. Its checkpoint hash (the ledger's content hash of the
folder) is shown on every response and in every audit record, so an answer can be traced to the
exact weights that gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from soberan.config import ConfigError
from soberan.offline import go_offline

# ChatML, for a checkpoint that carries no chat template of its own (a base model from `soberan
# train`); `<|im_end|>` then also ends a turn.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CHATML_END = "<|im_end|>"


@dataclass
class ModelSource:
    path: Path
    model_id: str  # the name clients put in `model`
    checkpoint: str  # sha256 of the checkpoint folder
    artifact_seq: int | None = None  # the ledger record it came from, if any


def resolve_model(ws, model: Path | None = None) -> ModelSource:
    """The workspace's newest model artifact, or `model` when given."""
    from soberan.documents import tree_sha256

    if model is not None:
        path = Path(model).resolve()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: not a Hugging Face checkpoint (no config.json)")
        return ModelSource(path, path.name if path.name != "final" else path.parent.parent.name,
                           tree_sha256(path))
    # A chat fine-tune of the nation's model is what people talk to; else the pretrained model.
    art = ws.ledger.latest_artifact("train", "model", role="chat") or \
        ws.ledger.latest_artifact("train", "model", role="main")
    if art is None:
        raise ConfigError(f"{ws.root}: no trained model in the ledger yet (run `soberan train`, "
                          "or pass --model PATH)")
    path = ws.root / art["path"]
    if not path.exists():
        raise FileNotFoundError(f"model artifact {art['path']} (ledger record {art['seq']}) is missing")
    return ModelSource(path, ws.config.project.name, art["sha256"], art["seq"])


@dataclass
class Loaded:
    model: object
    tokenizer: object
    context_length: int
    eos_ids: set[int]
    chat_template: str
    extra_stop: tuple[str, ...] = field(default=())  # stop strings the template implies


def load_transformers(path: Path, *, quantize: str = "none", threads: int = 0,
                      context_length: int = 0, weights: bool = True, device: str = "cpu") -> Loaded:
    """Load a checkpoint for inference from local files only (with `weights=False`, only its
    tokenizer and config: vLLM loads the weights itself). `device="auto"` puts the weights on the
    GPU in bf16 when there is one (saying so when there is none); int8 is a CPU format."""
    go_offline()
    import torch
    import transformers

    from soberan import hf
    from soberan.common import cpu_workers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    # One core stays with the HTTP event loop: OpenMP workers that spin on every core starve it,
    # and on a 2-core machine that costs more than the second core gains (measured: 14x slower).
    torch.set_num_threads(threads or max(1, cpu_workers() - 1))
    tok = hf.load_tokenizer(path)
    model = None
    if weights:
        from soberan.device import pick_device
        from soberan.ui import console

        where = "cpu" if quantize == "int8" else pick_device(device, console.print, "serving")
        # On a GPU bf16: half the memory and the tensor cores; a CPU computes bf16 slowly.
        dtype = torch.bfloat16 if where.startswith("cuda") else torch.float32
        model = hf.load_model(path, dtype=dtype).to(where)
        model.eval()
        if quantize == "int8":
            model = quantize_int8(model)
    cfg = model.config if model is not None else hf.load_config(path)
    native = getattr(cfg, "max_position_embeddings", 0) or 2048
    ctx = min(context_length, native) if context_length else native  # never past what it was built for
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else tok.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    if tok.eos_token_id is not None:
        eos_ids.add(tok.eos_token_id)
    if getattr(tok, "chat_template", None):
        return Loaded(model, tok, ctx, eos_ids, tok.chat_template)
    return Loaded(model, tok, ctx, eos_ids, CHATML, (CHATML_END,))


def quantize_int8(model):
    """Dynamic int8 quantization of every Linear layer (weights int8, activations quantized on
    the fly): the same checkpoint on any x86 or ARM CPU, no NVIDIA GPU needed."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated in favour of
        warnings.simplefilter("ignore")  # torchao, but still ships and needs no extra package
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def render_chat(tokenizer, template: str, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()
