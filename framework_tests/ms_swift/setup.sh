#!/usr/bin/env bash
# Build .venvs/ms_swift (idempotent): ms-swift 4.6.0 from PyPI beside the CPU torch 2.13.0 neftune uses,
# plus neftune (editable, no deps). ms-swift pins transformers < 5.17, trl < 1.0, peft < 0.21.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venvs/ms_swift
stamp="$venv/.neftune-setup-done"
if [ -f "$stamp" ]; then echo "$venv is ready ($(cat "$stamp"))"; exit 0; fi
python=${PYTHON:-python3.11}
start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" "ms-swift==4.6.0" "torch==2.13.0"
"${pip[@]}" --no-deps -e .
"$venv/bin/python" -c "import swift, torch, transformers, trl, neftune; print('ms-swift', swift.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
echo "built in $(( $(date +%s) - start )) s on $(date -u +%F)" > "$stamp"
cat "$stamp"
