#!/usr/bin/env bash
# Every GPU measurement of the project, in one command that fits one 9-minute call on an H100/H200-class card:
#
#   bash benchmarks/gpu_suite.sh                      # all parts, on the GPU; results in docs/results/gpu_<card>/
#   bash benchmarks/gpu_suite.sh --parts loss,train_step   # the atom loss alone and a training step (~3 minutes)
#   bash benchmarks/gpu_suite.sh --parts gan_protocol
#   bash benchmarks/gpu_suite.sh --dry_run            # the same program on the CPU at tiny sizes (a test)
#
# It uses .venv when there is one (`make setup`), else the python3 on PATH. See benchmarks/gpu_suite.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec "$PYTHON" benchmarks/gpu_suite.py "$@"
