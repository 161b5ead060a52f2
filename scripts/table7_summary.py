#!/usr/bin/env python3
"""Table 7 of docs/evidence.md from a finished (or partial) run folder of a spec with `prior` and
`frozen_layers` axes (experiments/evidence/table7_six_folds.toml): per setting the pooled scores averaged over
the training seeds, each seed's UF1, the last target epoch's training loss, the prior tasks' curves, and a
paired bootstrap over the test clips of each setting's UF1 minus that of no prior learning. Reads
results.json, folds.jsonl and priors.jsonl only (no code shared with mer's scoring).
    python3 scripts/table7_summary.py runs/table7_six_folds
"""
import json, sys, random
run = sys.argv[1]
res = json.load(open(f"{run}/results.json"))
pts = {p["index"]: p for p in res["sweep_points"]}
folds = [json.loads(l) for l in open(f"{run}/folds.jsonl")]
# target: last-epoch training loss and per-fold accuracy, by sweep point
tl = {}
for f in folds:
    ep = [e for e in f["result"]["epochs"] if e["stage"] == "target"]
    tl.setdefault(f["sweep_point"], []).append(ep[-1]["loss"])
def setting(p):
    v = p["values"]
    if v.get("prior") is False: return (1, 0, "no prior (random init)")
    k = v.get("frozen_layers", 0); return (0, k, f"k = {k}")
rows = {}
for i, p in pts.items():
    rows.setdefault(setting(p), []).append(p)
print("| setting | SMIC-HS UF1 / UAR | CASME II UF1 / UAR | SAMM UF1 / UAR | all UF1 / UAR (mean over seeds) | UF1 per seed | target train loss, last epoch |")
print("|---|---|---|---|---|---|---|")
for key in sorted(rows):
    ps = sorted(rows[key], key=lambda p: p["values"].get("seed") or 0)
    sc = [p["scores"] for p in ps if p.get("scores")]
    m = lambda xs: sum(xs)/len(xs) if xs else float('nan')
    cells = []
    for part in ["smic", "casme2", "samm"]:
        cells.append(f"{m([s['parts'][part]['uf1'] for s in sc]):.3f} / {m([s['parts'][part]['uar'] for s in sc]):.3f}")
    allc = f"{m([s['uf1'] for s in sc]):.4f} / {m([s['uar'] for s in sc]):.4f}"
    per = ", ".join(f"{s['uf1']:.4f}" for s in sc)
    loss = m([x for p in ps for x in tl.get(p["index"], [])])
    n = sum(s["n"] for s in sc)//max(len(sc),1)
    done = ",".join(f"{p['folds_done']}/{p['folds_total']}" for p in ps)
    print(f"| {key[2]} | " + " | ".join(cells) + f" | {allc} | {per} | {loss:.3f} |   <!-- n={n} folds {done} -->")
print()
pri = [json.loads(l) for l in open(f"{run}/priors.jsonl")]
print("| fold | siamese loss, epoch 1 -> 20 | held-out pair acc., epoch 1 / 5 / 10 / 20 |")
print("|---|---|---|")
for r in sorted(pri, key=lambda r: r["fold"]):
    e = r["epochs"]
    print(f"| {r['fold']} | {e[0]['loss']:.3f} -> {e[-1]['loss']:.3f} | " + " / ".join(f"{e[i]['monitor']:.2f}" for i in [0,4,9,len(e)-1]) + " |")

# Paired bootstrap over the test clips: UF1(setting) - UF1(no prior), each the mean over the seeds.
preds = {}  # sweep point -> {clip id: (label, pred)}
for f in folds:
    for p in f["result"]["predictions"]:
        preds.setdefault(f["sweep_point"], {})[p["id"]] = (p["label"], p["pred"])
def uf1(pairs):
    f1 = []
    for c in range(3):
        tp = sum(1 for l, q in pairs if l == c and q == c)
        fp = sum(1 for l, q in pairs if l != c and q == c)
        fn = sum(1 for l, q in pairs if l == c and q != c)
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1) / 3
groups = {}
for i, p in pts.items():
    groups.setdefault(setting(p), []).append(i)
ref = groups[(1, 0, "no prior (random init)")]
# Only points with every fold, and only clips every such point predicted (a partial run compares less).
full = {i for i, p in pts.items() if not p["partial"]}
groups = {k: [i for i in v if i in full] for k, v in groups.items()}
groups = {k: v for k, v in groups.items() if v}
ref = [i for i in ref if i in full]
if not ref:
    sys.exit("no finished no-prior point: no bootstrap")
ids = sorted(set.intersection(*(set(preds[i]) for v in groups.values() for i in v)))
rng = random.Random(1)
print(f"\n{len(ids)} test clips; paired bootstrap (2,000 resamples of clips, seed 1) of UF1 - UF1(no prior), mean over seeds:")
draws = [[rng.choice(ids) for _ in ids] for _ in range(2000)]
def score(pts_, sample):
    return sum(uf1([preds[i][c] for c in sample]) for i in pts_) / len(pts_)
for key in sorted(groups):
    if key == (1, 0, "no prior (random init)"): continue
    d = sorted(score(groups[key], s) - score(ref, s) for s in draws)
    obs = score(groups[key], ids) - score(ref, ids)
    print(f"  {key[2]}: {obs:+.4f}  (95 % interval {d[50]:+.3f} .. {d[1949]:+.3f})")
