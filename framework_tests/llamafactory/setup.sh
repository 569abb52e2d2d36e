#!/usr/bin/env bash
# Build .venvs/llamafactory (idempotent): LLaMA-Factory 0.9.5 from PyPI beside a CPU-capable torch it
# accepts, plus neftune (editable, no deps: its own pins would fight LLaMA-Factory's).
#   torch 2.9.1 + torchvision 0.24.1 first (torchvision from PyPI does not import beside torch 2.13),
#   then torchaudio 2.9.* and llamafactory 0.9.5 (it pins transformers <= 5.6, trl <= 0.24).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venvs/llamafactory
stamp="$venv/.neftune-setup-done"
if [ -f "$stamp" ]; then echo "$venv is ready ($(cat "$stamp"))"; exit 0; fi
python=${PYTHON:-python3.11}
start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
# Run pip from a folder without a stray ray/ directory (it makes LLaMA-Factory think Ray is installed).
"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==2.9.1" "torchvision==0.24.1"
"${pip[@]}" "torchaudio==2.9.*" "llamafactory==0.9.5"
"${pip[@]}" --no-deps -e .
"$venv/bin/python" -c "import llamafactory, torch, transformers, neftune; print('llamafactory', llamafactory.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
echo "built in $(( $(date +%s) - start )) s on $(date -u +%F)" > "$stamp"
cat "$stamp"
