#!/usr/bin/env python3
"""Is prior learning's pair task learnable from the prepared flows? A linear probe of same/different pairs.

Diagnostic for issue 33 (docs/evidence.md, "Does prior learning learn?"), not a method of the system, and it
shares no code with mer. Per leave-one-subject-out fold (the test subject is left out of everything):

- a few training subjects (`--unseen`, default 3, drawn with `--seed`) are kept out, as `prior.unseen_subjects`
  keeps them out of prior learning;
- every clip of the other training subjects is described by a 4 x 4 grid of its flow (u, v and magnitude of
  the key-frame flows summed to the apex: 48 numbers, as scripts/linear_probe.py), or with `--frames` by the
  4 x 4 grid of each of the ten key-frame flows (u, v: 320 numbers);
- a pair is described by the absolute difference of its two clips' descriptions (what eq. 8's head sees of
  the tower's features, with the grid standing in for the tower);
- accuracies are also given apart for pairs of two clips of one subject and pairs across subjects (count,
  accuracy), since the kept-out subjects' pairs are mostly of the first kind and the training pairs of the second;
- a logistic regression (C = 1, standardised features, fixed before any run) learns same / different on
  balanced pairs of the learning clips (90 %), and is scored on the other 10 % of those pairs (the monitor's
  analogue: same clips, other pairs) and on balanced pairs of the kept-out subjects' clips (unseen people).

It also prints the pair bookkeeping prior learning rests on: eq. 7's count over the learning clips, the
share of same-class pairs, of pairs within one subject and of pairs within one dataset part, overall and
among the same-class pairs.

    .venv/bin/python scripts/pair_probe.py data/prepared/realistic-s1.safetensors \
        --folds smic/s02,smic/s04,casme2/sub02,casme2/sub04,samm/7,samm/10 [--frames] [--unseen 3] [--seed 0]
"""
import argparse
import json
import random

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

SCHEME = "megc3"


def grid(x, g=4):
    s = x.shape[-1] // g
    return x[..., : s * g, : s * g].reshape(*x.shape[:-2], g, s, g, s).mean(axis=(-3, -1))


def describe(flow, meta, frames):
    out = []
    for f, m in zip(flow, meta):
        if frames:
            out.append(grid(f[:2]).ravel())
        else:
            times = m["keyframe_times"]
            k = max(1, int(np.argmin([abs(t - m["apex"]) for t in times]))) if times else f.shape[1]
            u, v = f[0, :k].sum(0), f[1, :k].sum(0)
            out.append(np.concatenate([grid(u).ravel(), grid(v).ravel(), grid(np.hypot(u, v)).ravel()]))
    return np.asarray(out, dtype=np.float64)


def all_pairs(idx):
    return [(a, b) for i, a in enumerate(idx) for b in idx[i + 1:]]


def balanced(pairs, labels, rng, n=None):
    same = [p for p in pairs if labels[p[0]] == labels[p[1]]]
    diff = [p for p in pairs if labels[p[0]] != labels[p[1]]]
    k = min(len(same), len(diff))
    if n is not None:
        k = min(k, n // 2)
    return rng.sample(same, k) + rng.sample(diff, k)


def pair_x(desc, pairs):
    return np.abs(desc[[a for a, _ in pairs]] - desc[[b for _, b in pairs]])


def pair_y(labels, pairs):
    return np.asarray([int(labels[a] == labels[b]) for a, b in pairs])


def bookkeeping(idx, labels, subject, part):
    pairs = all_pairs(idx)
    same = [p for p in pairs if labels[p[0]] == labels[p[1]]]
    share = lambda ps, f: sum(f(p) for p in ps) / max(1, len(ps))  # noqa: E731
    within_subject = lambda p: subject[p[0]] == subject[p[1]]  # noqa: E731
    within_part = lambda p: part[p[0]] == part[p[1]]  # noqa: E731
    return {
        "clips": len(idx),
        "eq7_pairs": len(pairs),
        "same_share": round(len(same) / max(1, len(pairs)), 3),
        "within_subject": round(share(pairs, within_subject), 3),
        "within_part": round(share(pairs, within_part), 3),
        "same_within_subject": round(share(same, within_subject), 3),
        "same_within_part": round(share(same, within_part), 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prepared")
    ap.add_argument("--folds", required=True, help="comma-separated dataset/subject keys")
    ap.add_argument("--frames", action="store_true", help="the ten key-frame flows' grids, not the apex sum")
    ap.add_argument("--unseen", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    with safe_open(a.prepared, "numpy") as f:
        meta = json.loads(f.metadata()["samples"])
    flow = load_file(a.prepared)["flow"]
    keep = [i for i, m in enumerate(meta) if SCHEME in m["labels"]]
    meta = [meta[i] for i in keep]
    flow = flow[keep]
    labels = [m["labels"][SCHEME] for m in meta]
    subject = [f'{m["dataset"]}/{m["subject"]}' for m in meta]
    part = [m["dataset"] for m in meta]
    desc = describe(flow, meta, a.frames)

    rows = []
    for fold in a.folds.split(","):
        if fold not in subject:
            raise SystemExit(f"fold {fold}: no labelled clip of that subject in {a.prepared}")
        rng = random.Random(f"{a.seed}/{fold}")
        train_subjects = sorted({s for s in subject if s != fold})
        unseen = set(rng.sample(train_subjects, a.unseen)) if a.unseen else set()
        learn = [i for i, s in enumerate(subject) if s != fold and s not in unseen]
        held = [i for i, s in enumerate(subject) if s in unseen]
        pairs = balanced(all_pairs(learn), labels, rng)
        rng.shuffle(pairs)
        cut = int(0.9 * len(pairs))
        fit, monitor = pairs[:cut], pairs[cut:]
        unseen_pairs = balanced(all_pairs(held), labels, rng) if held else []
        scaler = StandardScaler().fit(pair_x(desc, fit))
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(pair_x(desc, fit)), pair_y(labels, fit))
        acc = lambda ps: (  # noqa: E731
            float((clf.predict(scaler.transform(pair_x(desc, ps))) == pair_y(labels, ps)).mean()) if ps else None
        )
        within = lambda ps, w: [p for p in ps if (subject[p[0]] == subject[p[1]]) == w]  # noqa: E731
        split_acc = lambda ps: {  # noqa: E731
            k: (len(q), None if not q else round(acc(q), 3))
            for k, q in (("within_subject", within(ps, True)), ("across_subjects", within(ps, False)))
        }
        row = {
            "fold": fold,
            "unseen_subjects": sorted(unseen),
            "fit_pairs": len(fit),
            "fit_acc": round(acc(fit), 3),
            "monitor_pairs": len(monitor),
            "monitor_acc": round(acc(monitor), 3),
            "unseen_pairs": len(unseen_pairs),
            "unseen_acc": None if not unseen_pairs else round(acc(unseen_pairs), 3),
            "monitor_by_subject": split_acc(monitor),
            "unseen_by_subject": split_acc(unseen_pairs),
            "learn": bookkeeping(learn, labels, subject, part),
        }
        rows.append(row)
        print(json.dumps(row))
    mean = lambda k: round(float(np.mean([r[k] for r in rows if r[k] is not None])), 3)  # noqa: E731
    print(json.dumps({"mean": {k: mean(k) for k in ("fit_acc", "monitor_acc", "unseen_acc")},
                      "features": "frames" if a.frames else "apex-sum", "unseen": a.unseen, "seed": a.seed}))


if __name__ == "__main__":
    main()
