"""Checks mer's pooled scores against scikit-learn.

Reads a JSON-lines file; each line is one prediction set with fields
  labels, preds, datasets (lists), classes (int), ours {acc, uf1, uar, f1_macro, parts {name: {acc, uf1, uar}}}.
Exits non-zero (printing the first mismatches) when any score differs by more than 1e-9.
"""
import json
import sys
import warnings

from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, f1_score, recall_score

warnings.simplefilter("ignore", UndefinedMetricWarning)
TOL = 1e-9


def scores(y, p, k):
    labels = list(range(k))
    return {
        "acc": accuracy_score(y, p),
        "uf1": f1_score(y, p, average="macro", labels=labels, zero_division=0),
        "uar": recall_score(y, p, average="macro", labels=labels, zero_division=0),
    }


def main(path):
    bad, n = [], 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            s = json.loads(line)
            k = s["classes"]
            ref = scores(s["labels"], s["preds"], k)
            ours = s["ours"]
            for key, v in ref.items():
                if abs(ours[key] - v) > TOL:
                    bad.append(f"set {lineno}: {key} ours {ours[key]!r} sklearn {v!r}")
            if abs(ours["f1_macro"] - ref["uf1"]) > TOL:
                bad.append(f"set {lineno}: f1_macro ours {ours['f1_macro']!r} sklearn {ref['uf1']!r}")
            parts = sorted(set(s["datasets"]))
            if sorted(ours["parts"]) != parts:
                bad.append(f"set {lineno}: parts ours {sorted(ours['parts'])} expected {parts}")
            for d in parts:
                idx = [i for i, x in enumerate(s["datasets"]) if x == d]
                pref = scores([s["labels"][i] for i in idx], [s["preds"][i] for i in idx], k)
                for key, v in pref.items():
                    got = ours["parts"].get(d, {}).get(key)
                    if got is None or abs(got - v) > TOL:
                        bad.append(f"set {lineno} part {d}: {key} ours {got!r} sklearn {v!r}")
            n += 1
    if bad:
        print("\n".join(bad[:20]))
        print(f"{len(bad)} mismatches over {n} sets")
        return 1
    print(f"sklearn agrees on {n} prediction sets (tolerance {TOL})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
