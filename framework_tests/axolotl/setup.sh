#!/usr/bin/env bash
# Build .venvs/axolotl: Python 3.11, CPU torch 2.13.0, Axolotl 0.19.x from PyPI, neftune (this repo,
# editable, no deps: Axolotl brings transformers/peft/accelerate). Idempotent: a stamp records what
# was installed; rerunning with the stamp present does nothing.
# Axolotl 0.21 needs Python 3.12; 0.19.x is the newest that installs on 3.11 (torch 2.11-2.13).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3.11}
TORCH=${TORCH:-torch==2.13.0}
AXOLOTL=${AXOLOTL:-axolotl==0.19.*}
venv=.venvs/axolotl
stamp="$venv/.neftune-setup"
want="$TORCH $AXOLOTL"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$venv is ready ($want)"
    exit 0
fi
start=$(date +%s)
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" "$TORCH"                                   # the CPU build first, so nothing pulls CUDA wheels
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$venv/bin/python" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > "$constraints" 2>/dev/null
PIP_CONSTRAINT="$constraints" "${pip[@]}" "$AXOLOTL"  # keeps torch as installed
"${pip[@]}" --no-deps -e .
"$venv/bin/python" -m pip install -q pytest
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
print("installed:", ", ".join(f"{p} {md.version(p)}" for p in ("torch", "axolotl", "transformers", "peft", "accelerate", "neftune")))
PY
echo "$want" > "$stamp"
echo "$venv built in $(( $(date +%s) - start )) s; $(du -sh "$venv" | cut -f1)"
