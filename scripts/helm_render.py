#!/usr/bin/env python3
"""Renders the mer Helm chart with a real Helm engine and writes one file per manifest.

The engine is Helm v4's Go SDK compiled as a C library, shipped on PyPI as `helm-python-sdk`
(import `helm_python`); scripts/bootstrap.sh installs it into .venv. Nothing contacts a cluster:
`lookup` returns nothing, as in `helm template`.

Usage: helm_render.py CHART OUT_DIR [--values FILE]... [--release NAME] [--namespace NS]

Steps, each fatal on error (exit 1, message on stderr):
  1. `helm lint` on the chart (errors only; informational findings are printed);
  2. merged values checked against the chart's values.schema.json;
  3. templates rendered; every non-empty YAML document is written to OUT_DIR/manifests/NN-kind-name.yaml;
  4. OUT_DIR/rendered.json: [{"template": ..., "manifest": {...}}] for the test's assertions, and
     OUT_DIR/NOTES.txt.
"""
import argparse
import json
import os
import sys

import yaml
import helm_python as helm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chart")
    ap.add_argument("out")
    ap.add_argument("--values", action="append", default=[])
    ap.add_argument("--release", default="mer")
    ap.add_argument("--namespace", default="default")
    a = ap.parse_args()

    lint = helm.lint(a.chart)
    for m in lint.get("messages", []):
        print(f"lint: {m.get('path')}: {m.get('error')} (severity {m.get('severity')})", file=sys.stderr)
    if lint.get("errors"):
        print(f"helm lint failed: {lint['errors']}", file=sys.stderr)
        return 1

    values = {}
    for f in a.values:
        with open(f, encoding="utf-8") as fh:
            v = yaml.safe_load(fh) or {}
        values = deep_merge(values, v)

    os.makedirs(os.path.join(a.out, "manifests"), exist_ok=True)
    with helm.Chart.load(a.chart) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=a.release, namespace=a.namespace)
        print(f"engine: helm-c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}", file=sys.stderr)

    out = []
    n = 0
    for template in sorted(rendered):
        text = rendered[template]
        if template.endswith("NOTES.txt"):
            with open(os.path.join(a.out, "NOTES.txt"), "w", encoding="utf-8") as fh:
                fh.write(text)
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            n += 1
            name = f"{n:02d}-{doc.get('kind', 'unknown').lower()}-{doc.get('metadata', {}).get('name', 'unnamed')}.yaml"
            with open(os.path.join(a.out, "manifests", name), "w", encoding="utf-8") as fh:
                yaml.safe_dump(doc, fh, sort_keys=False)
            out.append({"template": template, "file": name, "manifest": doc})
    with open(os.path.join(a.out, "rendered.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)
    print(f"rendered {n} manifests into {a.out}/manifests", file=sys.stderr)
    return 0


def deep_merge(a, b):
    """Helm's values merge: maps merge key by key, everything else is replaced."""
    if isinstance(a, dict) and isinstance(b, dict):
        r = dict(a)
        for k, v in b.items():
            r[k] = deep_merge(a.get(k), v) if k in a else v
        return r
    return b


if __name__ == "__main__":
    try:
        sys.exit(main())
    except helm.HelmError as e:  # render, schema and load errors
        print(f"helm: {e}", file=sys.stderr)
        sys.exit(1)
