#!/usr/bin/env bash
# TRL's command line runs in neftune's own venv (.venv has trl; `make setup` builds it, idempotent).
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s setup
.venv/bin/python -c "import trl, transformers, accelerate; print('trl', trl.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
