#!/usr/bin/env bash
# LLaMA-Factory's own training with `neftune llamafactory train`, packed, on a tiny local Llama (CPU).
# Needs .venvs/llamafactory (setup.sh). Work folder: $NEFTUNE_FT_WORK or a fresh temporary one; it is run
# from there (a stray ray/ folder in the working directory makes LLaMA-Factory think Ray is installed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venvs/llamafactory"
[ -x "$venv/bin/python" ] || { echo "no $venv: run framework_tests/llamafactory/setup.sh first" >&2; exit 2; }
work=${NEFTUNE_FT_WORK:-$(mktemp -d -t neftune-llamafactory.XXXXXX)}
mkdir -p "$work"
cd "$work"
export PATH="$venv/bin:$PATH" DISABLE_VERSION_CHECK=0 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec "$venv/bin/python" "$root/framework_tests/llamafactory/check.py" --work "$work"
