#!/usr/bin/env bash
# One script for a machine with a GPU (about 8 minutes on one card); without one it runs its CPU
# part and says that no GPU was present.
#
#     bash benchmarks/gpu_check.sh            # from the project root, after `make setup`
#
# With a GPU: bf16 training samples/s and MFU against the card's nominal peak, against
# sentence-transformers' trainer on identical batches (benchmarks/train_throughput.py
# --device cuda); the bf16 and fp16 autocast paths a real run takes, two slots on one card,
# and evaluation encoding throughput (benchmarks/gpu_paths.py). Each part has its own time
# limit, so one that hangs cannot eat the others' time.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
export HBT_DATA_DIR=${HBT_DATA_DIR:-$(cd .. && pwd)/shared/data}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

echo "=== gpu_check $(date -u +%FT%TZ) · $(git rev-parse --short HEAD 2>/dev/null || echo 'no git')"
"$PYTHON" -c "import json, engine.child.runtime as r; print('machine:', json.dumps(r.machine()))"
if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "--- training throughput on the GPU (bf16 and fp32; ours, today's step, the peers)"
  timeout 270 "$PYTHON" benchmarks/train_throughput.py --device cuda --steps 20 --batch-size 64 \
    --systems ours-bf16,today-bf16,st-trainer-bf16,reference-bf16,ours-fp32,st-trainer \
    || echo "!!! train_throughput on cuda: exit $?"
  echo "--- CUDA paths: bf16/fp16 runs, two slots on one card, encoding throughput"
  timeout 180 "$PYTHON" benchmarks/gpu_paths.py --device cuda --steps 6 || echo "!!! gpu_paths: exit $?"
else
  echo "no GPU present: torch sees no CUDA device; the CPU part only"
fi
echo "--- CPU part: our step against today's on identical batches, with the profile"
timeout 420 "$PYTHON" benchmarks/train_throughput.py --device cpu --steps 4 --systems ours-fp32,today-fp32 \
  || echo "!!! train_throughput on cpu: exit $?"
echo "=== done $(date -u +%FT%TZ)"
