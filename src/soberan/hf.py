"""Hugging Face formats: tokenizers in the field's formats, and checkpoints from local folders.

Core, because the tokenizer stage writes what train, evaluate, serve and report read, and each
of them would otherwise load it its own way.

Every tokenizer becomes an HF `tokenizers.Tokenizer` on load, so one code path measures, extends
and saves them all:

- a SentencePiece `.model` (Mistral v1, Llama 2, Gemma...) through transformers' own converter,
  which follows the model's normalizer spec, ranks BPE merges by piece score and keeps byte
  fallback, so ids equal `SentencePieceProcessor.encode` (the benchmark checks this on NTREX);
- a Tekken `.json` (Mistral's tiktoken-style 131k vocabulary) rebuilt as byte-level BPE the way
  transformers' `TikTokenConverter` does, special tokens at ids 0-999 as Tekken has them;
- an HF `tokenizer.json`, or a folder holding one (its tokenizer_config.json gives the special
  tokens and the chat template).

The output folder holds tokenizer.json, tokenizer_config.json and special_tokens_map.json with
`tokenizer_class: PreTrainedTokenizerFast`, which transformers 4 and 5 (and so vLLM) load as is.

Checkpoints and their tokenizers load through transformers with `load_model`, `load_tokenizer`
and `load_config`, from local files only: every call sets `local_files_only`, so a local folder
never makes transformers ask the hub anything (a hub id is an error, not a download; the offline
switches in `soberan.offline` say the same to every library).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tokenizers import AddedToken, Tokenizer

# Names of tokenizer files the mistral-common wheel ships (site-packages/mistral_common/data/).
BUILTIN = {"mistral-v1": "tokenizer.model.v1", "tekken": "tekken_240911.json"}

Style = Literal["sentencepiece", "bytelevel", "other"]

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
# Mistral's v1 instruct format ([INST] ... [/INST]); a system message is folded into the first
# user turn, as Mistral's own template does.
MISTRAL = ("{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}"
           "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\\n\\n' %}"
           "{% elif message['role'] == 'user' %}{{ '[INST] ' + ns.system + message['content'] + ' [/INST]' }}"
           "{% set ns.system = '' %}{% elif message['role'] == 'assistant' %}"
           "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")


@dataclass
class Loaded:
    """A tokenizer in HF `tokenizers` form, with what the rest of the stage needs to know."""

    tokenizer: Tokenizer
    name: str  # the built-in name or the path it was read from
    style: Style  # sentencepiece: ▁ for spaces + byte fallback; bytelevel: GPT-2 byte alphabet
    bos: str | None = None
    eos: str | None = None
    unk: str | None = None
    pad: str | None = None
    chat_template: str | None = None
    special: list[str] = field(default_factory=list)
    # SentencePiece trainer rules the base was built under, kept by new tokens (see extend.py).
    split_by_script: bool = False
    max_piece_chars: int = 0  # 0: no limit

    @property
    def vocab_size(self) -> int:
        """One past the highest id, added tokens included: where new ids start."""
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        return max(vocab.values()) + 1 if vocab else 0


def mistral_common_file(name: str) -> Path:
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / BUILTIN[name]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; the installed mistral-common no longer ships it")
    return path


def resolve(spec: str | Path, root: Path | None = None) -> Path:
    """A built-in name or a path (relative to `root`) → an existing path."""
    s = str(spec)
    if s in BUILTIN:
        return mistral_common_file(s)
    p = Path(s).expanduser()
    if not p.is_absolute() and root is not None:
        p = root / p
    if not p.exists():
        raise FileNotFoundError(f"no tokenizer at {p} (give a tokenizer.json, a folder holding one, a "
                                f"SentencePiece .model, a Tekken .json, or one of {sorted(BUILTIN)})")
    return p


def load(spec: str | Path, root: Path | None = None) -> Loaded:
    """Load any supported tokenizer (see the module docstring) as an HF `tokenizers.Tokenizer`."""
    path = resolve(spec, root)
    name = str(spec) if str(spec) in BUILTIN else str(path)
    if path.is_dir():
        if not (path / "tokenizer.json").exists():
            raise FileNotFoundError(f"{path} holds no tokenizer.json")
        return _load_hf(path / "tokenizer.json", name)
    if path.suffix == ".json":
        head = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(head.get("vocab"), list) and "config" in head:
            return _load_tekken(path, name, head)
        return _load_hf(path, name)
    return _load_sentencepiece(path, name)


def _load_sentencepiece(path: Path, name: str) -> Loaded:
    from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf

    proto = import_protobuf().ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf raises its own DecodeError
        raise FileNotFoundError(f"{path} is not a SentencePiece model ({e})") from None
    if proto.trainer_spec.model_type != 2:
        raise ValueError(f"{path} is a SentencePiece {'Unigram' if proto.trainer_spec.model_type == 1 else ''} "
                         "model; only BPE models can be extended by continuing their merges")
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    # legacy=True reproduces SentencePiece's dummy prefix exactly (" x" → "▁▁x"), so ids and
    # round trips match the reference implementation on text starting with a space.
    tok = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    ts = proto.trainer_spec
    control = [p.piece for p in proto.pieces if p.type in (2, 3)]  # unknown, control
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])

    def piece(i: int) -> str | None:
        return proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None

    return Loaded(tok, name, "sentencepiece", bos=piece(ts.bos_id), eos=piece(ts.eos_id),
                  unk=piece(ts.unk_id), pad=piece(ts.pad_id), special=control,
                  split_by_script=ts.split_by_unicode_script,
                  max_piece_chars=ts.max_sentencepiece_length)


def _load_tekken(path: Path, name: str, data: dict) -> Loaded:
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    cfg = data["config"]
    n_special = cfg["default_num_special_tokens"]
    inner = cfg["default_vocab_size"] - n_special
    # The special tokens Tekken files list (or, in older files, mistral-common's defaults), then
    # the <SPECIAL_n> fillers up to the reserved count, exactly as mistral-common numbers them.
    listed = data.get("special_tokens") or Tekkenizer.DEPRECATED_SPECIAL_TOKENS
    specials = [t["token_str"] for t in sorted(listed, key=lambda t: t["rank"])]
    specials += [Tekkenizer.SPECIAL_TOKEN_TEMPLATE.format(id=i) for i in range(len(specials), n_special)]
    ranks = {base64.b64decode(v["token_bytes"]): v["rank"] for v in data["vocab"][:inner]}
    table = {b: c for b, c in bytes_to_unicode().items()}

    def s(b: bytes) -> str:  # bytes → GPT-2 byte-level string, via str.translate (fast)
        return b.decode("latin-1").translate(table)

    # Tiktoken keeps ranks, not merges: a token's merge is the split of it into two tokens of
    # lower rank (the same reconstruction as transformers' TikTokenConverter).
    merges = []
    for tok_bytes, rank in ranks.items():
        for i in range(1, len(tok_bytes)):
            left, right = tok_bytes[:i], tok_bytes[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    vocab = {t: i for i, t in enumerate(specials)}
    vocab.update({s(b): r + n_special for b, r in ranks.items()})
    tok = Tokenizer(models.BPE(vocab, [(s(m[3]), s(m[4])) for m in merges], ignore_merges=True,
                               fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(cfg["pattern"]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return Loaded(tok, name, "bytelevel", bos="<s>", eos="</s>", unk="<unk>", pad="<pad>",
                  special=specials)


def _load_hf(path: Path, name: str) -> Loaded:
    tok = Tokenizer.from_file(str(path))
    spec = json.loads(tok.to_str())
    cfg_path = path.parent / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}

    def tok_name(key: str) -> str | None:
        v = cfg.get(key)
        return v.get("content") if isinstance(v, dict) else v

    template = cfg.get("chat_template")
    jinja = path.parent / "chat_template.jinja"
    if jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    if isinstance(template, list):  # several named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    text = json.dumps(spec.get("decoder")) + json.dumps(spec.get("pre_tokenizer"))
    model = spec.get("model", {})
    style: Style = ("bytelevel" if "ByteLevel" in text else
                    "sentencepiece" if ("▁" in text or "Metaspace" in text or model.get("byte_fallback"))
                    else "other")
    return Loaded(tok, name, style, bos=tok_name("bos_token"), eos=tok_name("eos_token"),
                  unk=tok_name("unk_token") or model.get("unk_token"), pad=tok_name("pad_token"),
                  chat_template=template,
                  special=[a["content"] for a in spec.get("added_tokens", []) if a.get("special")],
                  # a SentencePiece-style pipeline has no regex pre-tokenizer to keep scripts apart
                  split_by_script=style == "sentencepiece")


# --- what a token stands for ----------------------------------------------------------------

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def piece_bytes(piece: str, style: Style) -> bytes:
    """The UTF-8 bytes a vocabulary piece stands for."""
    if style == "sentencepiece":
        m = _BYTE_PIECE.match(piece)
        return bytes([int(m.group(1), 16)]) if m else piece.replace("▁", " ").encode("utf-8")
    if style == "bytelevel":
        dec = _byte_decoder()
        if all(c in dec for c in piece):
            return bytes(dec[c] for c in piece)
    return piece.encode("utf-8")


def byte_piece_ids(loaded: Loaded) -> dict[int, int]:
    """Byte-fallback pieces (`<0xE2>`) of a SentencePiece-style tokenizer: id → byte value."""
    if loaded.style != "sentencepiece":
        return {}
    out = {}
    for piece, i in loaded.tokenizer.get_vocab(with_added_tokens=False).items():
        m = _BYTE_PIECE.match(piece)
        if m:
            out[i] = int(m.group(1), 16)
    return out


# --- saving -----------------------------------------------------------------------------------

def chat_template_for(setting: str, loaded: Loaded, mode: str) -> str:
    """The chat template a setting names: "auto" keeps the base's own, uses Mistral's format on a
    Mistral base, and ChatML on a tokenizer trained from scratch."""
    if setting == "chatml":
        return CHATML
    if setting == "mistral":
        return MISTRAL
    if setting != "auto":
        return setting  # a Jinja template given in the config
    if mode != "replace":
        if loaded.chat_template:
            return loaded.chat_template
        if "mistral" in loaded.name.lower() or "tekken" in loaded.name.lower():
            return MISTRAL
    return CHATML


def template_tokens(template: str) -> list[str]:
    """Special tokens a chat template writes literally and so needs in the vocabulary."""
    return [t for t in CHATML_TOKENS if t in template]


def save(tok: Tokenizer, out: Path, *, bos: str | None, eos: str | None, unk: str | None,
         pad: str | None, chat_template: str | None, add_bos: bool = True) -> Path:
    """Write an HF tokenizer folder that AutoTokenizer (transformers 4 and 5) and vLLM load as is."""
    from tokenizers import processors

    out.mkdir(parents=True, exist_ok=True)
    if add_bos and bos is not None and tok.token_to_id(bos) is not None:
        # The BOS the model was (or will be) trained with is added by the tokenizer itself, as in
        # Mistral's and Llama's tokenizer.json, so every loader agrees on it.
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    tok.save(str(out / "tokenizer.json"))
    specials = {k: v for k, v in {"bos_token": bos, "eos_token": eos, "unk_token": unk,
                                  "pad_token": pad}.items() if v is not None}
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1_000_000_000,
           "clean_up_tokenization_spaces": False, **specials}
    if chat_template:
        cfg["chat_template"] = chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n",
                                               encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(specials, ensure_ascii=False, indent=2) + "\n",
                                                 encoding="utf-8")
    return out


# --- checkpoints, through transformers: local files only --------------------------------------

def _local(path: str | Path) -> str:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such local folder (models and tokenizers load from local "
                                "files only, never from the hub)")
    return str(p)


def load_tokenizer(path: str | Path, **kwargs):
    """A transformers tokenizer from a local folder (tokenizer.json + tokenizer_config.json) or a
    tokenizer.json file. `kwargs` go to `AutoTokenizer.from_pretrained` (e.g. `gguf_file`)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a tokenizer folder or tokenizer.json")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, **kwargs)


def load_model(path: str | Path, **kwargs):
    """A causal LM from a local checkpoint folder; `kwargs` go to
    `AutoModelForCausalLM.from_pretrained` (`dtype`, `gguf_file`)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(_local(path), local_files_only=True, **kwargs)


def load_config(path: str | Path):
    """The model config of a local checkpoint folder, without its weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(_local(path), local_files_only=True)
