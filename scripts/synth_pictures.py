#!/usr/bin/env python3
"""Pictures of synthetic clips and their prepared flow, for docs/synthetic.md.

For a few clips of a `mer synth` output (one per class, and one with a blink when there is one) this draws
a row: the onset frame and the apex frame as written to disk (full frame), their difference (x6), the
prepared flow summed from the first key-frame up to the apex key-frame (colour: direction, brightness:
magnitude, saturating at 2 px) and that flow's magnitude. It reads synth.json (the generator's truth) and
the prepared safetensors file (`mer prep` output); it shares no code with mer.

    .venv/bin/python scripts/synth_pictures.py --synth data/synth/realistic-s1 \
        --prepared data/prepared/realistic-s1.safetensors --out docs/synthetic/clips.png
"""
import argparse
import colorsys
import json
import os

import numpy as np
from PIL import Image, ImageDraw
from safetensors.numpy import load_file
from safetensors import safe_open

CLASSES = ["negative", "positive", "surprise"]


def flow_rgb(u, v, sat=2.0):
    mag = np.hypot(u, v)
    ang = (np.arctan2(v, u) + np.pi) / (2 * np.pi)
    out = np.zeros(u.shape + (3,), np.uint8)
    val = np.clip(mag / sat, 0, 1)
    for (y, x), a in np.ndenumerate(ang):
        r, g, b = colorsys.hsv_to_rgb(a, 1.0, val[y, x])
        out[y, x] = (255 * r, 255 * g, 255 * b)
    return out


def grey(path):
    return np.asarray(Image.open(path).convert("L"))


def tile(a, h=176):
    img = Image.fromarray(a)
    w = int(round(img.width * h / img.height))
    return img.resize((w, h), Image.NEAREST)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", required=True)
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    truth = json.load(open(os.path.join(a.synth, "synth.json")))
    with safe_open(a.prepared, "numpy") as f:
        meta = json.loads(f.metadata()["samples"])
    flow = load_file(a.prepared)["flow"]
    roots = {"casme2": truth["casme2"], "samm": truth["samm"], "smic": truth["smic"]}
    by_id = {(t["dataset"], t["filename"]): t for t in truth["truth"]}
    picks, seen = [], set()
    for i, m in enumerate(meta):
        t = by_id.get((m["dataset"], m["filename"]))
        if t is None or t.get("megc3") is None:
            continue
        key = t["megc3"]
        if key not in seen:
            seen.add(key)
            picks.append((i, m, t, CLASSES[key]))
    blink = next(
        (
            (i, m, by_id[(m["dataset"], m["filename"])], "blink")
            for i, m in enumerate(meta)
            if (m["dataset"], m["filename"]) in by_id
            and all(i != j for j, *_ in picks)
            and (by_id[(m["dataset"], m["filename"])].get("realistic") or {}).get("nuisances", {}).get("blink")
        ),
        None,
    )
    if blink:
        picks.append(blink)
    rows = []
    for i, m, t, what in picks:
        frames = m["source_frames"]
        root = roots[m["dataset"]]
        path = lambda f: f if os.path.isabs(f) else os.path.join(root, f)
        times = m["keyframe_times"]
        apex_k = int(np.argmin([abs(x - m["apex"]) for x in times]))
        on = grey(path(frames[0])).astype(np.float32)
        apx = grey(path(frames[min(apex_k, len(frames) - 1)])).astype(np.float32)
        diff = np.clip(128 + 6 * (apx - on), 0, 255).astype(np.uint8)
        f = flow[i]
        u = f[0, :max(apex_k, 1)].sum(0)
        v = f[1, :max(apex_k, 1)].sum(0)
        mag = np.hypot(u, v)
        magi = np.clip(255 * mag / max(mag.max(), 1e-6), 0, 255).astype(np.uint8)
        parts = [tile(on.astype(np.uint8)), tile(apx.astype(np.uint8)), tile(diff), tile(flow_rgb(u, v)),
                 tile(magi)]
        r = (t.get("realistic") or {})
        label = (f"{what}: {m['id']}  AUs {r.get('aus', '?')}  peak {t.get('intensity', 0):.2f} px@112  "
                 f"apex error {r.get('apex_error', 0):+.0f} fr  max |flow| {mag.max():.2f} px")
        w = sum(p.width for p in parts) + 4 * len(parts)
        row = Image.new("RGB", (w, 176 + 18), "white")
        x = 0
        for p in parts:
            row.paste(p.convert("RGB"), (x, 18))
            x += p.width + 4
        ImageDraw.Draw(row).text((2, 3), label, fill="black")
        rows.append(row)
    head = Image.new("RGB", (rows[0].width, 18), "white")
    ImageDraw.Draw(head).text(
        (2, 3), "onset frame | apex frame | apex - onset (x6) | flow onset->apex (hue: direction) | |flow|",
        fill="black")
    out = Image.new("RGB", (max(r.width for r in rows), 18 + sum(r.height for r in rows)), "white")
    out.paste(head, (0, 0))
    y = 18
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    out.save(a.out)
    print(f"wrote {a.out}: {len(rows)} clips")


if __name__ == "__main__":
    main()
