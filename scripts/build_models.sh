#!/usr/bin/env bash
# Rebuild the bundled models in assets/models from the real data slices in ../shared/data.
# Same commands, same numbers: every run is seeded and single-threaded.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${GRAPE_SHARED_DATA:-../shared/data}
export GRAPE_GENE_SOURCES=${GRAPE_GENE_SOURCES:-$DATA/genes}

python -m grape_core train --data "$DATA/adamson_gears_mini.h5ad" \
  --split-file "$DATA/adamson_simulation_1_0.75.json" --seed 1 --threads 1 --ablations \
  --name adamson --out assets/models/adamson --overwrite

python -m grape_core train --data "$DATA/norman_perturbench_devel.h5ad" --subset dataset=norman19 \
  --split simulation --seed 1 --threads 1 --ablations \
  --name norman --out assets/models/norman --overwrite
