#!/usr/bin/env bash
# The GPU runs of benchmarks/train_throughput.py in one call, most telling first, for a lent
# machine with a time box: each run is skipped once less than 100 s of BUDGET (seconds) is left.
#   OUT=/tmp/out BUDGET=500 bash benchmarks/train_throughput_gpu.sh
set -u
OUT=${OUT:-/tmp/train-throughput}; BUDGET=${BUDGET:-500}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
run() {  # name, then the benchmark's arguments
  local name=$1; shift
  local left=$((BUDGET - ($(date +%s) - start)))
  if [ "$left" -lt 100 ]; then echo "== $name: skipped, ${left}s left"; return; fi
  echo "== $name: $*"
  timeout "$((left - 10))" python3 benchmarks/train_throughput.py --depth 20 --seq-len 2048 --warmup 3 --steps 15 \
    "$@" >"$OUT/$name.log" 2>&1
  echo "   rc $? after $(( $(date +%s) - start ))s"; grep -E "^(run|tokens_per_s)" "$OUT/$name.log" || tail -3 "$OUT/$name.log"
}
run causal16 --compile --batch 16 --profile "$OUT/profile_causal16.txt"
run sdpa16 --compile --batch 16 --attn sdpa
run cudnn16 --compile --batch 16 --sdpa-backend cudnn
run flash16 --compile --batch 16 --sdpa-backend flash
run causal32 --compile --batch 32
echo "== summary"; grep -H "^tokens_per_s" "$OUT"/*.log
