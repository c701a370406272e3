#!/usr/bin/env bash
# soberan's own stages on a lent GPU, in one call: train, a kill and resume, evaluate, serve, and the
# GPU's checkpoint served by the CPU. Most telling first; a part that would not fit in what is left
# of BUDGET (seconds) is skipped, never cut off halfway.
#
#   python benchmarks/gpu_prepare.py                          # here, once: .gpu/wheels + .gpu/slice
#   OUT=/tmp/out BUDGET=450 bash benchmarks/gpu_stages.sh     # on the GPU box (carry .gpu)
#   bash benchmarks/gpu_stages.sh --cpu-rehearsal             # here: every part, on the CPU, tiny
#
# The rehearsal runs every command with `python -S` on a site folder holding only what the GPU
# box has (benchmarks/gpu_box.py), so a missing wheel or an eager curate-only import shows here.
# Without CUDA and without --cpu-rehearsal it says so and rehearses.
set -u -o pipefail
cd "$(dirname "$0")/.."
REHEARSAL=0; [ "${1:-}" = "--cpu-rehearsal" ] && REHEARSAL=1
OUT=${OUT:-/tmp/gpu-stages}; BUDGET=${BUDGET:-450}; GPU=${GPU:-.gpu}; PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); rm -f "$OUT/summary.txt"
export PYTHONPATH=src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }

if [ $REHEARSAL = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
  if ! $PYTHON -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "no CUDA device: $($PYTHON -c 'import sys; sys.path.insert(0, "src")
from soberan.device import cuda_missing_reason; print(cuda_missing_reason())'); running the CPU rehearsal instead"
    REHEARSAL=1
  elif ls "$GPU"/wheels/*.whl >/dev/null 2>&1; then  # into a folder of their own: the image stays as it is
    $PYTHON -m pip install --quiet --no-index --no-deps --target "$OUT/site" "$GPU"/wheels/*.whl 2>&1 | tail -3 ||
      for w in "$GPU"/wheels/*.whl; do $PYTHON -m zipfile -e "$w" "$OUT/site"; done  # no pip: a wheel is a zip
    export PYTHONPATH=src:$OUT/site
  fi
  if [ $REHEARSAL = 0 ] && ! $PYTHON -c 'import pydantic, fastapi, uvicorn, pycountry, license_expression' 2>/dev/null; then
    echo "the stages' packages are missing (pydantic, fastapi, uvicorn, ...): run benchmarks/gpu_prepare.py" \
         "here and carry $GPU"; exit 2
  fi
fi
PY=("$PYTHON")
if [ $REHEARSAL = 1 ]; then
  SITE=$("$PYTHON" benchmarks/gpu_box.py "$OUT/box-site") || exit 1
  # One thread: tiny matmuls on a small shared CPU spin more than they compute on two.
  export PYTHONPATH=src:$SITE CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1
  PY=("$PYTHON" -S)
fi
SOB=("${PY[@]}" -c "from soberan.cli import main; main()")
HELP=("${PY[@]}" benchmarks/gpu_stages.py)
"${PY[@]}" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

# Sizes. GPU: the ~0.5B model of benchmarks/train_throughput.py, on the prepared slice; the
# resume check uses a smaller model, eager, since it is about the checkpoint, not the speed.
if [ $REHEARSAL = 1 ]; then
  TRAIN=(train.depth=1 train.seq_len=64 train.micro_batch=4 train.max_steps=12 train.log_every=2
         train.eval_every=6 train.checkpoint_every=12 train.warmup_steps=2 train.compile='"aot_eager"'
         train.max_epochs=1000.0 train.eval_max_bytes=2000)
  RESUME=(train.depth=1 train.seq_len=64 train.micro_batch=4 train.max_steps=60 train.log_every=5
          train.eval_every=1000 train.checkpoint_every=10 train.keep_checkpoints=10 train.compile='"off"'
          train.max_epochs=1000.0 train.eval_max_bytes=2000 train.tensorboard=false)
  KILL_AT=10; TOL=1e-4; WARM=4; EVAL=(evaluate.limit=8 evaluate.bpb_max_docs=4)
  SERVE=(--streams 8 --requests 16 --single 4 --max-tokens 8); CPUSERVE=(--requests 2 --single 2 --max-tokens 4)
  NEED_TRAIN=20; NEED_RESUME=20; NEED_EVAL=10; NEED_SERVE=20; NEED_CPU=10
else
  TRAIN=(train.depth=20 train.seq_len=2048 train.micro_batch=16 train.tie_embeddings=false train.max_steps=300 train.log_every=10
         train.eval_every=100 train.checkpoint_every=300 train.warmup_steps=30 train.precision='"bf16"'
         train.compile='"auto"' train.max_epochs=1000.0)
  RESUME=(train.depth=8 train.seq_len=1024 train.micro_batch=8 train.max_steps=200 train.log_every=10
          train.eval_every=1000 train.checkpoint_every=50 train.keep_checkpoints=10 train.precision='"bf16"'
          train.compile='"off"' train.max_epochs=1000.0 train.tensorboard=false)
  KILL_AT=50; TOL=2e-2; WARM=40; EVAL=(evaluate.batch_size=64)
  SERVE=(--streams 64 --requests 128 --single 16 --max-tokens 64); CPUSERVE=(--requests 2 --single 2 --max-tokens 8)
  NEED_TRAIN=200; NEED_RESUME=60; NEED_EVAL=40; NEED_SERVE=80; NEED_CPU=40
fi

SLICE=$GPU/slice/ws
if [ ! -f "$SLICE/soberan.toml" ]; then
  if [ $REHEARSAL = 0 ]; then echo "no prepared slice at $SLICE: run benchmarks/gpu_prepare.py first"; exit 2; fi
  echo "== prepare: a tiny slice from the konlpy text (no $SLICE)"
  "$PYTHON" benchmarks/gpu_prepare.py --no-wheels --source konlpy --new-tokens 500 --kobest-items 8 \
    --out "$OUT/prep" >"$OUT/prepare.log" 2>&1 || { tail -20 "$OUT/prepare.log"; exit 1; }
  SLICE=$OUT/prep/slice/ws
fi
fresh() {  # a copy of the prepared slice, with these settings
  rm -rf "$1"; cp -r "$SLICE" "$1"; shift_ws=$1; shift; "${HELP[@]}" configure "$shift_ws" "$@"
}
part() {  # name, seconds it needs: 0 (go) or 1 (skip, said)
  local l; l=$(left)
  if [ "$l" -lt "$2" ]; then echo "== $1: skipped, ${l}s left of ${BUDGET}s (needs ~$2 s)"; return 1; fi
  echo "== $1 ($(( $(date +%s) - start ))s in, ${l}s left)"; return 0
}
FAIL=0

# 1. `soberan train` from scratch on the packed slice: tokens/s and MFU from its metrics.jsonl.
WS=$OUT/ws
if part train "$NEED_TRAIN"; then
  fresh "$WS" "${TRAIN[@]}" "${EVAL[@]}"
  timeout $(( $(left) - 5 )) "${SOB[@]}" train -w "$WS" >"$OUT/train.log" 2>&1
  rc=$?; echo "   rc $rc after $(( $(date +%s) - start ))s"
  if [ $rc = 0 ]; then "${HELP[@]}" train-summary "$WS" --warm "$WARM" --json "$OUT/train.json" | tee -a "$OUT/summary.txt" || FAIL=1
  else tail -15 "$OUT/train.log"; FAIL=1; fi
fi

# 2. Kill at a checkpoint and resume: the same loss curve as a run left alone. Both runs go at once.
if part resume "$NEED_RESUME"; then
  fresh "$OUT/ws-clean" "${RESUME[@]}"; fresh "$OUT/ws-killed" "${RESUME[@]}"
  t=$(( $(left) - 5 ))
  timeout $t "${SOB[@]}" train -w "$OUT/ws-clean" >"$OUT/resume-clean.log" 2>&1 & clean=$!
  "${SOB[@]}" train -w "$OUT/ws-killed" >"$OUT/resume-killed.log" 2>&1 & killed=$!  # the process itself
  ck=$OUT/ws-killed/model/checkpoints/step-$KILL_AT
  while kill -0 $killed 2>/dev/null && [ ! -f "$ck/training_state.pt" ] && [ "$(left)" -gt 10 ]; do sleep 0.05; done
  kill -KILL $killed 2>/dev/null; wait $killed 2>/dev/null
  done_ck=$(ls "$OUT/ws-killed/model/checkpoints" 2>/dev/null | tr '\n' ' ')
  if [ -d "$OUT/ws-killed/model/final" ]; then echo "   the run ended before the kill: no resume to check"; FAIL=1
  else
    echo "   killed after $KILL_AT; checkpoints left: $done_ck"
    timeout $(( $(left) - 5 )) "${SOB[@]}" train -w "$OUT/ws-killed" >"$OUT/resume-resumed.log" 2>&1 || { tail -5 "$OUT/resume-resumed.log"; FAIL=1; }
    grep -o "resuming from [^ ]*" "$OUT/resume-resumed.log" | head -1 | sed 's/^/   /'
  fi
  wait $clean || { tail -5 "$OUT/resume-clean.log"; FAIL=1; }
  "${HELP[@]}" curves "$OUT/ws-clean" "$OUT/ws-killed" --tol "$TOL" --json "$OUT/resume.json" | tee -a "$OUT/summary.txt" || FAIL=1
fi

# 3. `soberan evaluate` on the device: held-out bits per byte and the KoBEST slice, batched.
if [ -d "$WS/model/final" ] && part evaluate "$NEED_EVAL"; then
  timeout $(( $(left) - 5 )) "${HELP[@]}" evaluate "$WS" --json "$OUT/evaluate.json" >"$OUT/evaluate.log" 2>&1
  grep "^evaluate:" "$OUT/evaluate.log" | tee -a "$OUT/summary.txt" || { tail -15 "$OUT/evaluate.log"; FAIL=1; }
fi

# 4. `soberan serve`: 64 concurrent streams batched against one request at a time (vLLM beside
#    them when it is importable).
if [ -d "$WS/model/final" ] && part serve "$NEED_SERVE"; then
  timeout $(( $(left) - 5 )) "${HELP[@]}" serve "$WS" "$WS/model/final" "${SERVE[@]}" --json "$OUT/serve.json" \
    >"$OUT/serve.log" 2>&1 || FAIL=1
  grep "^serve" "$OUT/serve.log" | tee -a "$OUT/summary.txt" || tail -15 "$OUT/serve.log"
fi

# 5. The checkpoint the GPU wrote, loaded and served by the CPU.
CK=$WS/model/final  # written on the GPU; the checkpoints beside it also hold 4 GB of optimizer state
if [ -d "$CK" ] && part cpu-load "$NEED_CPU"; then
  timeout $(( $(left) - 5 )) "${HELP[@]}" serve "$WS" "$CK" --cpu "${CPUSERVE[@]}" --json "$OUT/cpu_load.json" \
    >"$OUT/cpu_load.log" 2>&1 || FAIL=1
  grep "^cpu-load\|^serve" "$OUT/cpu_load.log" | tee -a "$OUT/summary.txt" || tail -15 "$OUT/cpu_load.log"
fi

echo "== summary ($(( $(date +%s) - start ))s; $([ $REHEARSAL = 1 ] && echo "CPU rehearsal" || cat "$OUT/gpu.txt"))"
grep -h "^train:\|^resume:\|^evaluate:\|^serve:\|^cpu-load:" "$OUT/summary.txt" 2>/dev/null
echo "result: $([ $FAIL = 0 ] && echo ok || echo FAILED) (logs and JSON in $OUT)"
exit $FAIL
