#!/bin/bash
# Usage: HF_ATOM_SWAP={none,zero,tenth} ./run_trl.sh   -> results/trl_$HF_ATOM_SWAP.{log,xml}
HERE="$(cd "$(dirname "$0")" && pwd)"; cd "$HERE" && mkdir -p results
PYTHON="${PYTHON:-$HERE/../../.venv/bin/python}"
MODE=${HF_ATOM_SWAP:-none}
HF_ATOM_SWAP=$MODE HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 timeout 1500 "$PYTHON" -m pytest \
  -p no:cacheprovider --rootdir "$HERE" -c /dev/null -q -rfEs --timeout 300 \
  --junitxml="$HERE"/results/trl_$MODE.xml \
  "trl/tests/test_sft_trainer.py::TestSFTTrainer" \
  -k "not vlm and not vision and not NemotronH and not trust_remote_code" \
  > results/trl_$MODE.log 2>&1
echo "rc=$?" >> results/trl_$MODE.log
