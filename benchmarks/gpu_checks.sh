#!/usr/bin/env bash
# Every GPU check in one run, for a machine with a CUDA GPU (a few minutes):
#   1. the tests marked gpu (training, prediction, screens, replayed steps, members side by side);
#   2. the model benchmark on CUDA: Norman then Adamson size as a user runs them (the first
#      size also pays the CUDA libraries' one-time start-up), then Norman size warmed up,
#      side by side and one member after the other;
#   3. the genome-size screen (one member) on CUDA, last: its first screen predicts every single.
# Usage: bash benchmarks/gpu_checks.sh [folder for the JSON, default benchmarks/results]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results}"
threads="$(nproc)"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA GPU here')"
python -m pytest -q -p no:cacheprovider -m gpu tests/test_devices.py
python benchmarks/bench_model.py --device cuda --size norman adamson --threads "$threads" \
  --out "$out/model_gpu.json"
python benchmarks/bench_model.py --device cuda --size norman --warm-up --threads "$threads" \
  --out "$out/model_gpu_warm.json"
python benchmarks/bench_model.py --device cuda --size norman --warm-up --one-by-one \
  --threads "$threads" --out "$out/model_gpu_warm_one_by_one.json"
python benchmarks/bench_model.py --device cuda --size genome --ensemble 1 --warm-up \
  --threads "$threads" --out "$out/model_genome_gpu.json"
