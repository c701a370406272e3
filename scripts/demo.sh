#!/usr/bin/env bash
# The demo, top to bottom: a Korean workspace from the text the konlpy wheel ships, built with
# every stage that exists, then its ledger verified. Runs offline.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
S=.venv/bin/soberan
rm -rf demo
$S init demo --lang ko --jurisdiction KR --name soberan-ko-demo --demo
$S collect -w demo
$S ledger verify -w demo
