#!/usr/bin/env bash
# Run the Axolotl tests with .venvs/axolotl (build it first: framework_tests/axolotl/setup.sh).
# Extra arguments go to pytest, e.g. `bash framework_tests/axolotl/run.sh -k lora`.
# Measured figures land in framework_tests/axolotl/results/*.json (NEFTUNE_AXOLOTL_RESULTS overrides).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venvs/axolotl
[ -x "$venv/bin/python" ] || { echo "$venv is missing: run bash framework_tests/axolotl/setup.sh" >&2; exit 2; }
start=$(date +%s)
status=0
# rootdir/confcutdir here: the repo's pytest settings (testpaths, xdist) are for tests/.
"$venv/bin/python" -m pytest -q -p no:cacheprovider -p no:xdist -p no:randomly \
    --durations=0 --rootdir framework_tests/axolotl -c /dev/null framework_tests/axolotl "$@" || status=$?
echo "axolotl tests: $(( $(date +%s) - start )) s"
exit "$status"
