#!/usr/bin/env python3
"""Table 7 of docs/evidence.md from a finished (or partial) run folder of a spec with `prior` and
`frozen_layers` axes (experiments/evidence/table7_six_folds.toml, prior_all_folds.toml): per setting the pooled
scores averaged over the training seeds, each seed's UF1, the last target epoch's training loss, the prior
tasks' curves, a paired bootstrap over the test clips of each setting's UF1 minus that of no prior learning, and
(one prior per fold) whether folds whose prior fits better gain more.
With --control DIR (a run of the same target learning from a control prior, prior_shuffled_six_folds.toml),
the control's settings are compared with the main run's on the control's test clips. With several run folders
(one per generator seed of the same spec, as scripts/realistic_evidence.sh writes them), each is summarised, then
the settings across them: per seed UF1 and its mean, and a bootstrap of the mean UF1 difference to no prior
learning that resamples the clips within each seed (seeds are different data sets, so clips never pool across
them). Reads results.json, folds.jsonl and priors.jsonl only (no code shared with mer's scoring).
    python3 scripts/table7_summary.py runs/table7_six_folds
    python3 scripts/table7_summary.py runs/prior_all_folds --control runs/prior_shuffled_six_folds
    python3 scripts/table7_summary.py runs/prior_all_folds-s1 runs/prior_all_folds-s2 runs/prior_all_folds-s3
"""
import json, sys, random
from statistics import median

NO_PRIOR = (1, 0, "no prior (random init)")


def setting(p, tag=""):
    v = p["values"]
    if v.get("prior") is False:
        return NO_PRIOR
    k = v.get("frozen_layers", 0)
    return (0 if not tag else 2, k, f"{tag}k = {k}")


def load(run, tag=""):
    """Sweep points grouped by setting, clip predictions, last-epoch target losses and per-fold accuracy on
    the test subject per point."""
    res = json.load(open(f"{run}/results.json"))
    pts = {p["index"]: p for p in res["sweep_points"]}
    preds, loss, acc = {}, {}, {}
    for l in open(f"{run}/folds.jsonl"):
        f = json.loads(l)
        ep = [e for e in f["result"]["epochs"] if e["stage"] == "target"]
        loss.setdefault(f["sweep_point"], []).append(ep[-1]["loss"])
        ps = f["result"]["predictions"]
        for p in ps:
            preds.setdefault(f["sweep_point"], {})[p["id"]] = (p["label"], p["pred"])
        acc[(run, f["sweep_point"]), f["fold"]] = sum(p["label"] == p["pred"] for p in ps) / len(ps)
    groups = {}
    for i, p in pts.items():
        groups.setdefault(setting(p, tag), []).append((run, i))
    pts = {(run, i): p for i, p in pts.items()}
    preds = {(run, i): v for i, v in preds.items()}
    loss = {(run, i): v for i, v in loss.items()}
    return pts, groups, preds, loss, acc


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def uf1(pairs):
    f1 = []
    for c in range(3):
        tp = sum(1 for l, q in pairs if l == c and q == c)
        fp = sum(1 for l, q in pairs if l != c and q == c)
        fn = sum(1 for l, q in pairs if l == c and q != c)
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1) / 3


def table(pts, groups, loss):
    print("| setting | SMIC-HS UF1 / UAR | CASME II UF1 / UAR | SAMM UF1 / UAR | all UF1 / UAR (mean over seeds) "
          "| UF1 per seed | target train loss, last epoch |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(groups):
        ps = sorted((pts[i] for i in groups[key]), key=lambda p: p["values"].get("seed") or 0)
        sc = [p["scores"] for p in ps if p.get("scores")]
        cells = [f"{mean([s['parts'][part]['uf1'] for s in sc]):.3f} / {mean([s['parts'][part]['uar'] for s in sc]):.3f}"
                 for part in ["smic", "casme2", "samm"]]
        allc = f"{mean([s['uf1'] for s in sc]):.4f} / {mean([s['uar'] for s in sc]):.4f}"
        per = ", ".join(f"{s['uf1']:.4f}" for s in sc)
        lo = mean([x for i in groups[key] for x in loss.get(i, [])])
        n = sum(s["n"] for s in sc) // max(len(sc), 1)
        done = ",".join(f"{p['folds_done']}/{p['folds_total']}" for p in ps)
        print(f"| {key[2]} | " + " | ".join(cells) + f" | {allc} | {per} | {lo:.3f} |   <!-- n={n} folds {done} -->")
    print()


def read_priors(run):
    """The prior tasks' records (fold and per-epoch loss and held-out pair accuracy)."""
    return [json.loads(l) for l in open(f"{run}/priors.jsonl")]


def priors(pri):
    """The prior curves' table."""
    if not pri:
        return
    n = len(pri[0]["epochs"])
    at = sorted({i for i in [0, 2, 4, 9, n - 1] if i < n})
    ep = " / ".join(str(i + 1) for i in at)
    print(f"| fold | siamese loss, epoch 1 -> {n} | held-out pair acc., epoch {ep} |")
    print("|---|---|---|")
    for r in sorted(pri, key=lambda r: r["fold"]):
        e = r["epochs"]
        print(f"| {r['fold']} | {e[0]['loss']:.3f} -> {e[-1]['loss']:.3f} | "
              + " / ".join(f"{e[i]['monitor']:.2f}" for i in at) + " |")
    last = sorted(r["epochs"][-1]["monitor"] for r in pri)
    lo = sorted(r["epochs"][-1]["loss"] for r in pri)
    print(f"\n{len(pri)} priors; last epoch: held-out pair acc. {last[0]:.3f} .. {last[-1]:.3f} (median "
          f"{median(last):.3f}), loss {lo[0]:.3f} .. {lo[-1]:.3f}\n")


def bootstrap(groups, preds, ref_key, title):
    """Paired bootstrap of UF1(setting) - UF1(ref) over the clips every complete point predicted."""
    ids = sorted(set.intersection(*(set(preds[i]) for v in groups.values() for i in v)))
    rng = random.Random(1)
    print(f"{title}: {len(ids)} test clips; paired bootstrap (2,000 resamples of clips, seed 1) of "
          f"UF1 - UF1({ref_key[2]}), mean over seeds:")
    draws = [[rng.choice(ids) for _ in ids] for _ in range(2000)]

    def score(pts_, sample):
        return sum(uf1([preds[i][c] for c in sample]) for i in pts_) / len(pts_)

    ref = groups[ref_key]
    for key in sorted(groups):
        if key == ref_key:
            continue
        d = sorted(score(groups[key], s) - score(ref, s) for s in draws)
        obs = score(groups[key], ids) - score(ref, ids)
        print(f"  {key[2]}: UF1 {score(groups[key], ids):.4f} against {score(ref, ids):.4f}, "
              f"{obs:+.4f}  (95 % interval {d[50]:+.3f} .. {d[1949]:+.3f})")
    print()


def across_seeds(loaded):
    """Settings across generator seeds, from (run, finished points by setting, predictions) of each run with
    a finished no-prior point: each run is one seed's data; a setting's score is the mean over seeds of its
    pooled UF1, and the bootstrap resamples clips within each seed with one draw per seed per round."""
    per = []
    for run, full, preds in loaded:
        ids = sorted(set.intersection(*(set(preds[i]) for v in full.values() for i in v)))
        per.append((run, full, preds, ids))
    keys = sorted(set.intersection(*(set(f) for _, f, _, _ in per))) if per else []
    if len(per) < 2 or NO_PRIOR not in keys:
        print("fewer than two runs with finished points: no comparison across seeds")
        return
    rng = random.Random(1)
    draws = [[[rng.choice(ids) for _ in ids] for _ in range(2000)] for _, _, _, ids in per]

    def score(key, r, sample):
        _, full, preds, _ = per[r]
        return sum(uf1([preds[i][c] for c in sample]) for i in full[key]) / len(full[key])

    names = ", ".join(f"{run} ({len(ids)} clips)" for run, _, _, ids in per)
    print(f"across {len(per)} generator seeds: {names}; UF1 per seed, its mean, and the mean of the per-seed "
          f"differences to {NO_PRIOR[2]} (95 % interval: 2,000 rounds resampling clips within each seed, seed 1)")
    print("| setting | UF1 per seed | mean UF1 | mean UF1 - no prior (95 % interval) | seeds above no prior |")
    print("|---|---|---|---|---|")
    for key in keys:
        obs = [score(key, r, per[r][3]) for r in range(len(per))]
        ref = [score(NO_PRIOR, r, per[r][3]) for r in range(len(per))]
        cells = f"| {key[2]} | " + ", ".join(f"{x:.4f}" for x in obs) + f" | {mean(obs):.4f} |"
        if key == NO_PRIOR:
            print(cells + " | |")
            continue
        d = sorted(mean([score(key, r, draws[r][b]) - score(NO_PRIOR, r, draws[r][b]) for r in range(len(per))])
                   for b in range(2000))
        above = sum(1 for o, f in zip(obs, ref) if o > f)
        print(cells + f" {mean(obs) - mean(ref):+.4f} ({d[50]:+.3f} .. {d[1949]:+.3f}) | {above} of {len(per)} |")
    print()


def fit_against_gain(pri, acc, groups):
    """Diagnostic: do folds whose prior fits held-out pairs better gain more over no prior learning? Per
    fold, the accuracy on the test subject's clips minus no prior's, against the prior's last-epoch
    held-out pair accuracy: Spearman's rho and a permutation p (5,000 shuffles of the gains, seed 1). Only
    for runs with one prior per fold (one training seed)."""
    last = {r["fold"]: r["epochs"][-1]["monitor"] for r in pri}
    if len(last) < len(pri):
        print("several priors per fold (training seeds): no fit-against-gain diagnostic\n")
        return
    pri = last

    def ranks(xs):
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        r = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    def pearson(a, b):
        ma, mb = mean(a), mean(b)
        c = sum((x - ma) * (y - mb) for x, y in zip(a, b))
        return c / (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5

    ref = groups.get(NO_PRIOR, [])
    if len(ref) != 1:
        return
    print("diagnostic: per-fold gain in accuracy over no prior against the prior's last-epoch held-out pair "
          "accuracy")
    for key in sorted(groups):
        if key == NO_PRIOR or len(groups[key]) != 1:
            continue
        folds = [f for f in sorted(pri) if (groups[key][0], f) in acc and (ref[0], f) in acc]
        if len(folds) < 4:
            continue
        gain = [acc[groups[key][0], f] - acc[ref[0], f] for f in folds]
        fit = ranks([pri[f] for f in folds])
        rho = pearson(fit, ranks(gain))
        rng = random.Random(1)
        shuffled = []
        for _ in range(5000):
            g = gain[:]
            rng.shuffle(g)
            shuffled.append(pearson(fit, ranks(g)))
        p = sum(abs(x) >= abs(rho) - 1e-12 for x in shuffled) / len(shuffled)
        med = median(pri[f] for f in folds)
        hi = [g for g, f in zip(gain, folds) if pri[f] >= med]
        lo = [g for g, f in zip(gain, folds) if pri[f] < med]
        print(f"  {key[2]}: {len(folds)} folds, Spearman rho {rho:+.3f} (permutation p {p:.3f}); mean gain "
              f"{mean(hi):+.3f} where the prior fits at or above the median ({med:.3f}, {len(hi)} folds), "
              f"{mean(lo):+.3f} below ({len(lo)} folds)")
    print()


def complete(pts, groups):
    """Only points with every fold (a partial run compares less)."""
    g = {k: [i for i in v if not pts[i]["partial"]] for k, v in groups.items()}
    return {k: v for k, v in g.items() if v}


def main():
    args = sys.argv[1:]
    control = None
    if "--control" in args:
        j = args.index("--control")
        control = args[j + 1]
        del args[j:j + 2]
    if len(args) > 1:
        if control:
            sys.exit("--control compares one run folder with its control; give one run folder with it")
        loaded = []
        for run in args:
            print(f"## {run}\n")
            one = single(run, None)
            if one:
                loaded.append((run, *one))
            else:
                print(f"{run}: no finished no-prior point, left out of the comparison across seeds\n")
        across_seeds(loaded)
        return
    single(args[0], control)


def single(run, control):
    """Tables, prior curves and bootstraps of one run folder (and its control); its finished points by
    setting and its predictions, or None without a finished no-prior point."""
    pts, groups, preds, loss, acc = load(run)
    table(pts, groups, loss)
    pri = read_priors(run)
    priors(pri)
    full = complete(pts, groups)
    if NO_PRIOR not in full:
        print("no finished no-prior point: no bootstrap\n")
        return None
    bootstrap(full, preds, NO_PRIOR, run)
    fit_against_gain(pri, acc, full)
    if control:
        cpts, cgroups, cpreds, closs, _ = load(control, tag="shuffled-label prior, ")
        print(f"control {control}:")
        table(cpts, cgroups, closs)
        priors(read_priors(control))
        both = {**full, **complete(cpts, cgroups)}
        allp = {**preds, **cpreds}
        bootstrap(both, allp, NO_PRIOR, f"{run} and {control} on the control's clips")
        for k in sorted(full):
            if k == NO_PRIOR:
                continue
            ck = (2, k[1], f"shuffled-label prior, {k[2]}")
            if ck in both:
                bootstrap({k: full[k], ck: both[ck]}, allp, k, f"shuffled-label prior against the prior, {k[2]}")
    return full, preds


if __name__ == "__main__":
    main()
