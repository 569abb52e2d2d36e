#!/usr/bin/env bash
# Run neftune against real frameworks, each installed from the package registry into its own venv.
#   bash framework_tests/run.sh all            # every framework folder
#   bash framework_tests/run.sh axolotl trl    # some of them
# Each framework_tests/<name>/ holds setup.sh (builds .venvs/<name>, idempotent) and run.sh
# (runs that framework's own entry point on a tiny model and checks the noise each packed sequence got).
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
if [ "${#names[@]}" -eq 0 ] || [ "${names[0]}" = all ]; then
    names=()
    for d in framework_tests/*/; do [ -f "$d/run.sh" ] && names+=("$(basename "$d")"); done
fi
[ "${#names[@]}" -gt 0 ] || { echo "no framework folders found under framework_tests/" >&2; exit 1; }
status=0
for name in "${names[@]}"; do
    dir="framework_tests/$name"
    [ -f "$dir/run.sh" ] || { echo "unknown framework '$name' (no $dir/run.sh)" >&2; exit 2; }
    echo "== $name: setup"
    start=$(date +%s)
    bash "$dir/setup.sh"
    echo "== $name: run"
    if bash "$dir/run.sh"; then result=passed; else result=FAILED; status=1; fi
    echo "== $name: $result in $(( $(date +%s) - start )) s"
done
exit "$status"
