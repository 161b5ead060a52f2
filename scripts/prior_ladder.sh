#!/usr/bin/env bash
# The prior-learning budget ladder of docs/evidence.md ("Does prior learning learn?"): every rung of
# experiments/evidence/prior_ladder/ on six folds fixed before the runs (the first two subjects of each
# part of the realistic preset, seed 1), with `mer train-fold`. Each run's FoldResult JSON lands in
# runs/prior_ladder/<rung>/<fold>.json (skipped when present, so the script resumes); at the end the
# table of the last epoch's siamese loss, held-out pair accuracy and unseen-subject pair accuracy
# per rung and fold is printed.
#   scripts/prior_ladder.sh [RUNG ...]     (default: all rungs, cheapest first)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mer="${MER:-target/debug/mer}"
data=data/prepared/realistic-s1.safetensors
if [ ! -f "$data" ]; then
  "$mer" synth --preset realistic --seed 1 --out data/synth/realistic-s1
  "$mer" prep --casme2 data/synth/realistic-s1/casme2 --samm data/synth/realistic-s1/samm \
    --smic data/synth/realistic-s1/smic --baseline-inputs --out "$data"
fi
folds=(smic/s02 smic/s04 casme2/sub02 casme2/sub04 samm/7 samm/10)
rungs=("$@")
[ ${#rungs[@]} -gt 0 ] || rungs=(r1_cpu_3x192 r2_default_20x2000 r2_unseen8_20x2000 r3_20x6750)
for rung in "${rungs[@]}"; do
  out="runs/prior_ladder/$rung"
  mkdir -p "$out"
  for fold in "${folds[@]}"; do
    f="$out/${fold//\//_}.json"
    [ -s "$f" ] && continue
    echo "== $rung $fold" >&2
    MER_LOG=warn "$mer" train-fold --data "$data" --test-subject "$fold" \
      --spec "experiments/evidence/prior_ladder/$rung.toml" > "$f.tmp"
    mv "$f.tmp" "$f"
  done
done
python3 - "${rungs[@]}" <<'PY'
import json, sys, glob, os
# Unseen-subject pairs per fold: the artifact does not store the count, so it is read off the accuracies
# (the smallest count that makes every epoch's accuracy a whole number of pairs).
def pairs(acc):
    return next((n for n in range(1, 100000) if all(abs(a * n - round(a * n)) < 1e-6 for a in acc)), None)
print(f"{'rung':<20} {'fold':<14} {'epochs':>6} {'loss first':>10} {'loss last':>9} {'held-out first':>14} "
      f"{'held-out':>8} {'unseen first':>12} {'unseen 2nd half':>15} {'unseen':>7} {'pairs':>6} {'best unseen*':>12}")
for rung in sys.argv[1:]:
    for f in sorted(glob.glob(f"runs/prior_ladder/{rung}/*.json")):
        r = json.load(open(f))
        pe = [e for e in r["epochs"] if e["stage"] == "prior"]
        un = [e.get("unseen") for e in pe if e.get("unseen") is not None]
        half = un[len(un) // 2:]
        nan = float("nan")
        print(f"{rung:<20} {os.path.basename(f)[:-5]:<14} {len(pe):>6} {pe[0]['loss']:>10.3f} {pe[-1]['loss']:>9.3f} "
              f"{pe[0]['monitor']:>14.3f} {pe[-1]['monitor']:>8.3f} {un[0] if un else nan:>12.3f} "
              f"{sum(half) / len(half) if half else nan:>15.3f} {pe[-1].get('unseen') or nan:>7.3f} "
              f"{pairs(un) if un else '':>6} {max(un) if un else nan:>12.3f}")
print("unseen 2nd half: mean over the second half of the epochs (11-20 of 20)")
print("* best over epochs: a diagnostic only (choosing an epoch this way would select on those pairs)")
PY
