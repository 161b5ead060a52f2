#!/usr/bin/env bash
# The key-frame fill ablation (examples/ablation_keyframe_fill.toml) from scratch: the `mini` synthetic data
# (the demo's, same seed), prepared twice (Algorithm 1's fill, the widest-gap fill), one local LOSO run over
# both, and its summary. Resumes like the demo. About 4 minutes on 2 cores once `mer` is built.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --locked --bin mer
mer=target/debug/mer
seed="${MER_DEMO_SEED:-1}"
roots=(--casme2 data/synth/mini/casme2 --samm data/synth/mini/samm --smic data/synth/mini/smic)
if [ ! -f data/synth/mini/synth.json ]; then
  "$mer" synth --preset mini --seed "$seed" --out data/synth/mini
fi
if [ ! -f data/prepared/mini.safetensors ]; then
  "$mer" prep "${roots[@]}" --keyframe-fill algorithm1 --out data/prepared/mini.safetensors
fi
if [ ! -f data/prepared/mini_widestgap.safetensors ]; then
  "$mer" prep "${roots[@]}" --keyframe-fill widest-gap --out data/prepared/mini_widestgap.safetensors
fi
"$mer" run examples/ablation_keyframe_fill.toml --workers "${MER_DEMO_WORKERS:-2}" \
  --run-dir runs/ablation_keyframe_fill
