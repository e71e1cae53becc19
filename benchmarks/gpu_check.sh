#!/usr/bin/env bash
# The GPU checks of the RHEL fast path in one go: the CUDA-marked tests, then the speed benchmark
# on the device. Run from the repository root on a machine with a CUDA device:
#     bash benchmarks/gpu_check.sh
set -euo pipefail
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
python -m pytest -m cuda -q -p no:cacheprovider tests/
python benchmarks/rhel_speed.py --device cuda --steps 1000 10000 --repeats 2
