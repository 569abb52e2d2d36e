#!/usr/bin/env bash
# ms-swift's own `swift sft` with neftune's --external_plugins file, on a tiny local Llama (CPU, padded:
# ms-swift's packing needs flash attention). Needs .venvs/ms_swift (setup.sh). Work folder:
# $NEFTUNE_FT_WORK or a fresh temporary one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venvs/ms_swift"
[ -x "$venv/bin/python" ] || { echo "no $venv: run framework_tests/ms_swift/setup.sh first" >&2; exit 2; }
work=${NEFTUNE_FT_WORK:-$(mktemp -d -t neftune-ms-swift.XXXXXX)}
mkdir -p "$work"
cd "$work"
export PATH="$venv/bin:$PATH" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1
exec "$venv/bin/python" "$root/framework_tests/ms_swift/check.py" --work "$work"
