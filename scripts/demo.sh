#!/usr/bin/env bash
# THE main job (README): on a fresh machine installs what is missing, builds `mer`, generates the `mini`
# synthetic CASME II / SAMM / SMIC-HS datasets in their real on-disk layouts, prepares them (face crop,
# adaptive key-frames, Farneback flow), runs a LOSO experiment (examples/mini.toml: prior learning per fold,
# then target learning for a small focal-alpha sweep) with local worker processes, and prints the pooled
# UF1/UAR table. Re-running resumes: finished folds are reused, not re-run.
set -euo pipefail
# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh"
seed="${MER_DEMO_SEED:-1}"
workers="${MER_DEMO_WORKERS:-2}"

if [ ! -f data/synth/mini/synth.json ]; then
  "$mer" synth --preset mini --seed "$seed" --out data/synth/mini
fi
if [ ! -f data/prepared/mini.safetensors ]; then
  "$mer" prep --casme2 data/synth/mini/casme2 --samm data/synth/mini/samm --smic data/synth/mini/smic \
    --out data/prepared/mini.safetensors
fi
"$mer" prep inspect data/prepared/mini.safetensors | head -12
# `mer run` prints the summary table (runs/mini/summary.md) when the experiment ends.
"$mer" run examples/mini.toml --workers "$workers" --run-dir runs/mini
