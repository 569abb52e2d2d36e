#!/usr/bin/env bash
# `neftune trl sft` (TRL's own parser, sft main and accelerate launch) with packing on a tiny local Llama,
# beside TRL's own --neftune_noise_alpha. Work folder: $NEFTUNE_FT_WORK or a fresh temporary one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${NEFTUNE_FT_WORK:-$(mktemp -d -t neftune-trl.XXXXXX)}
mkdir -p "$work"
cd "$work"
export PATH="$root/.venv/bin:$PATH" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec "$root/.venv/bin/python" "$root/framework_tests/trl/check.py" --work "$work"
