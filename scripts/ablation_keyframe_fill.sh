#!/usr/bin/env bash
# The key-frame fill ablation (experiments/evidence/ablation_keyframe_fill.toml) from scratch, over
# generator seeds (default 1 2 3; seed 1 is the demo's data): the `mini` synthetic data, prepared twice
# (Algorithm 1's fill, the widest-gap fill), one local LOSO run per seed over both, and its summary. Every
# setting is the spec's; only the prepared files' paths change per seed. Resumes like the demo. About 2
# minutes per seed on 2 cores once `mer` is built.
set -euo pipefail
# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh"
for seed in ${MER_ABLATION_SEEDS:-1 2 3}; do
  if [ "$seed" = 1 ]; then synth=data/synth/mini; prepared=data/prepared/mini; else
    synth=data/synth/mini-s$seed; prepared=data/prepared/mini-s$seed; fi
  roots=(--casme2 "$synth/casme2" --samm "$synth/samm" --smic "$synth/smic")
  [ -f "$synth/synth.json" ] || "$mer" synth --preset mini --seed "$seed" --out "$synth"
  [ -f "$prepared.safetensors" ] ||
    "$mer" prep "${roots[@]}" --keyframe-fill algorithm1 --out "$prepared.safetensors"
  [ -f "${prepared}_widestgap.safetensors" ] ||
    "$mer" prep "${roots[@]}" --keyframe-fill widest-gap --out "${prepared}_widestgap.safetensors"
  mkdir -p runs
  spec=runs/ablation_keyframe_fill-s$seed.toml
  sed -e "s#\(\.\./\)\{1,\}data/prepared/mini_widestgap\.safetensors#$root/${prepared}_widestgap.safetensors#" \
      -e "s#\(\.\./\)\{1,\}data/prepared/mini\.safetensors#$root/$prepared.safetensors#" \
      experiments/evidence/ablation_keyframe_fill.toml > "$spec"
  echo "== generator seed $seed"
  "$mer" run "$spec" --workers "${MER_DEMO_WORKERS:-2}" --run-dir "runs/ablation_keyframe_fill-s$seed" --quiet
done
