#!/usr/bin/env bash
# The evidence experiment of docs/evidence.md from scratch: for each generator seed (default 1 2 3) the
# `realistic` synthetic preset, prepared with the baselines' inputs, then
# experiments/evidence/realistic_cpu.toml (the settings the evidence was measured with; or the spec in
# $MER_EVIDENCE_SPEC, e.g. an ablation in experiments/evidence/) through local mode, and its summary. Only
# the prepared file's path changes per seed; the spec's other `../data/` paths are made absolute, since its
# copy is written to runs/. Resumes like the demo: finished tasks are reused.
set -euo pipefail
# shellcheck source=scripts/prelude.sh
source "$(dirname "${BASH_SOURCE[0]}")/prelude.sh"
spec_in=${MER_EVIDENCE_SPEC:-experiments/evidence/realistic_cpu.toml}
name=$(basename "$spec_in" .toml)
for seed in ${MER_EVIDENCE_SEEDS:-1 2 3}; do
  synth=data/synth/realistic-s$seed
  prepared=data/prepared/realistic-s$seed.safetensors
  [ -f "$synth/synth.json" ] || "$mer" synth --preset realistic --seed "$seed" --out "$synth"
  [ -f "$prepared" ] || "$mer" prep --casme2 "$synth/casme2" --samm "$synth/samm" --smic "$synth/smic" \
    --baseline-inputs --out "$prepared"
  mkdir -p runs
  spec=runs/$name-s$seed.toml
  sed -e "s#\(\.\./\)\{1,\}data/prepared/realistic-s1\.safetensors#$root/$prepared#" \
      -e "s#\(\.\./\)\{1,\}data/#$root/data/#g" "$spec_in" > "$spec"
  echo "== generator seed $seed: $spec"
  "$mer" run "$spec" --workers "${MER_EVIDENCE_WORKERS:-2}" --run-dir "runs/$name-s$seed" --quiet
done
