#!/usr/bin/env python3
"""A linear probe of a prepared file: does `mer prep`'s output carry the class signal a linear model finds?

Diagnostic, not a method of the system. For every sample it sums the prepared key-frame flows from the
first key-frame up to the apex key-frame (u, v), takes the magnitude of the sum, averages u, v and magnitude
over a 4 x 4 grid of the face (48 features), standardises them on the training subjects and fits a
logistic regression (C = 1, fixed before any run) per leave-one-subject-out fold; the test subject's
predictions are pooled over all folds and scored as MEGC2019 does (UF1 = macro F1 of the pooled
predictions, UAR = macro recall), overall and per part. Shares no code with mer.

With `--input apex_flow` the same features come instead from the file's `apex_flow` group (`mer prep
--apex-flow`: one Farneback flow computed directly from the onset frame to the apex frame, the baselines'
input), so the two probes tell how much of the signal each input carries, with the same classifier.

    .venv/bin/python scripts/linear_probe.py data/prepared/realistic-s1.safetensors [--input apex_flow]
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, recall_score
from sklearn.preprocessing import StandardScaler


def features(flow, meta):
    out = []
    for f, m in zip(flow, meta):
        times = m["keyframe_times"]
        k = max(1, int(np.argmin([abs(t - m["apex"]) for t in times])))
        out.append(grid_features(f[0, :k].sum(0), f[1, :k].sum(0)))
    return np.asarray(out)


def grid_features(u, v, grid=4):
    mag = np.hypot(u, v)
    s = u.shape[0] // grid
    cells = []
    for ch in (u, v, mag):
        cells.extend(ch[:s * grid, :s * grid].reshape(grid, s, grid, s).mean(axis=(1, 3)).ravel())
    return cells


def main():
    args = sys.argv[1:]
    source = "keyframes"
    if "--input" in args:
        i = args.index("--input")
        source = args[i + 1]
        del args[i:i + 2]
        if source not in ("keyframes", "apex_flow"):
            sys.exit(f"--input {source}: expected keyframes or apex_flow")
    path = args[0]
    with safe_open(path, "numpy") as f:
        meta = json.loads(f.metadata()["samples"])
    tensors = load_file(path)
    keep = [i for i, m in enumerate(meta) if "megc3" in m["labels"]]
    meta = [meta[i] for i in keep]
    if source == "keyframes":
        x = features(tensors["flow"][keep], meta)
    else:
        if "apex_flow" not in tensors:
            sys.exit(f"{path}: no apex_flow group (prepare with mer prep --apex-flow)")
        x = np.asarray([grid_features(a[0], a[1]) for a in tensors["apex_flow"][keep]])
    y = np.array([m["labels"]["megc3"] for m in meta])
    subj = np.array([f"{m['dataset']}/{m['subject']}" for m in meta])
    part = np.array([m["dataset"] for m in meta])
    pred = np.zeros_like(y)
    for s in np.unique(subj):
        te = subj == s
        sc = StandardScaler().fit(x[~te])
        clf = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(x[~te]), y[~te])
        pred[te] = clf.predict(sc.transform(x[te]))
    labels = [0, 1, 2]

    def score(mask):
        uf1 = f1_score(y[mask], pred[mask], labels=labels, average="macro", zero_division=0)
        uar = recall_score(y[mask], pred[mask], labels=labels, average="macro", zero_division=0)
        return uf1, uar

    uf1, uar = score(np.ones_like(y, bool))
    parts = "  ".join(f"{p} {score(part == p)[0]:.4f}/{score(part == p)[1]:.4f}" for p in sorted(set(part)))
    print(f"{path}: linear probe on {source}, {len(np.unique(subj))} folds, {len(y)} samples: "
          f"UF1 {uf1:.4f} UAR {uar:.4f}  ({parts})")


if __name__ == "__main__":
    main()
