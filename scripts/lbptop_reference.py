#!/usr/bin/env python3
"""Independent reference for the LBP-TOP baseline's features (worker/src/baselines/lbptop.rs).

Usage: lbptop_reference.py MANIFEST.json

MANIFEST.json: {"cases": [{"name": str, "volume": path, "shape": [t, h, w], "radius": [rx, ry, rt],
"blocks": [rows, cols], "out": path}, ...]}. `volume` holds t*h*w raw uint8 values (frame-major,
row-major); `out` receives blocks*3*59 little-endian float64 values: per block (row-major) the XY, XT
and YT histograms of the "nri_uniform" codes of the interior centres, each normalised to sum 1 (zeros
for a block without centres). The block of pixel row y is y * rows // h (columns likewise).

Planes, as 2-D images: XY = V[t] (rows y, cols x), XT = V[:, y, :] (rows t, cols x), YT = V[:, :, x]
(rows t, cols y). A plane whose two radii are equal is computed with scikit-image's
local_binary_pattern(image, 8, R, 'nri_uniform'); every plane is also computed with the plain-numpy
elliptic implementation below, and where both exist they must agree code for code (this checks the numpy
one). Planes with unequal radii (e.g. XT with Rx = 1, Rt = 4) use the numpy codes.
"""
import json
import sys

import numpy as np

try:
    from skimage.feature import local_binary_pattern
except ImportError as e:  # the Rust test turns this into "run scripts/bootstrap.sh"
    sys.stderr.write(f"scikit-image is not installed ({e}); run scripts/bootstrap.sh\n")
    sys.exit(3)

P = 8
BINS = P * (P - 1) + 3  # 59


def nri_uniform_bins(bits):
    """bits: (P, ...) array of 0/1 (bit p: neighbour p >= centre) -> bin array (...).

    Uniform patterns (at most two 0/1 changes along p = 0..P-1): 0 if no ones, P(P-1)+1 if all ones,
    otherwise 1 + (ones - 1) * P + the number of right rotations of the pattern (see skimage's docs);
    every other pattern: P(P-1)+2.
    """
    bits = bits.astype(np.int64)
    changes = np.abs(np.diff(bits, axis=0)).sum(axis=0)
    ones = bits.sum(axis=0)
    first_one = np.argmax(bits == 1, axis=0)
    first_zero = np.argmax(bits == 0, axis=0)
    rot = np.where(first_one == 0, ones - first_zero, P - first_one)
    out = 1 + (ones - 1) * P + rot
    out = np.where(ones == 0, 0, out)
    out = np.where(ones == P, P * (P - 1) + 1, out)
    out = np.where(changes > 2, P * (P - 1) + 2, out)
    return out


def numpy_codes(stack, r_row, r_col):
    """stack: (n, R, C) float64 images. Codes of the centres rows [r_row, R - r_row), cols
    [r_col, C - r_col), neighbours on the ellipse with semi-axes r_row (rows) and r_col (cols),
    bilinear samples at the absolute positions."""
    n, R, C = stack.shape
    rows = np.arange(r_row, R - r_row)
    cols = np.arange(r_col, C - r_col)
    centre = stack[:, rows[:, None], cols[None, :]]
    bits = []
    for p in range(P):
        a = 2 * np.pi * p / P
        dr = np.round(-r_row * np.sin(a), 5)
        dc = np.round(r_col * np.cos(a), 5)
        pr = rows.astype(np.float64) + dr
        pc = cols.astype(np.float64) + dc
        r0, r1 = np.floor(pr), np.ceil(pr)
        c0, c1 = np.floor(pc), np.ceil(pc)
        fr = (pr - r0)[:, None]
        fc = (pc - c0)[None, :]
        r0, r1, c0, c1 = (v.astype(np.int64) for v in (r0, r1, c0, c1))
        top = (1 - fc) * stack[:, r0[:, None], c0[None, :]] + fc * stack[:, r0[:, None], c1[None, :]]
        bottom = (1 - fc) * stack[:, r1[:, None], c0[None, :]] + fc * stack[:, r1[:, None], c1[None, :]]
        value = (1 - fr) * top + fr * bottom
        bits.append(value - centre >= 0)
    return nri_uniform_bins(np.stack(bits))


def skimage_codes(stack_u8, r, r_row, r_col):
    """Same centres as numpy_codes, from skimage, one image at a time."""
    _, R, C = stack_u8.shape
    out = [local_binary_pattern(np.ascontiguousarray(img), P, r, method="nri_uniform")
           for img in stack_u8]
    return np.stack(out)[:, r_row:R - r_row, r_col:C - r_col].astype(np.int64)


def plane_codes(stack_u8, r_row, r_col, name, used):
    codes = numpy_codes(stack_u8.astype(np.float64), r_row, r_col)
    if r_row == r_col:
        ref = skimage_codes(stack_u8, r_row, r_row, r_col)
        bad = np.argwhere(ref != codes)
        if bad.size:
            sys.stderr.write(f"{name}: numpy and skimage codes differ at {len(bad)} centres, first "
                             f"{bad[0].tolist()}: {codes[tuple(bad[0])]} vs {ref[tuple(bad[0])]}\n")
            sys.exit(4)
        used.append(f"{name}:skimage+numpy")
        return ref
    used.append(f"{name}:numpy")
    return codes


def features(vol, radius, blocks):
    t, h, w = vol.shape
    rx, ry, rt = radius
    br, bc = blocks
    used = []
    # Codes of every plane, reindexed to the interior centres (t, y, x).
    xy = plane_codes(vol[rt:t - rt], ry, rx, "XY", used)  # (t', y', x')
    xt = plane_codes(vol.transpose(1, 0, 2)[ry:h - ry], rt, rx, "XT", used)  # (y', t', x')
    yt = plane_codes(vol.transpose(2, 0, 1)[rx:w - rx], rt, ry, "YT", used)  # (x', t', y')
    xt = xt.transpose(1, 0, 2)
    yt = yt.transpose(1, 2, 0)
    ys = np.arange(ry, h - ry)
    xs = np.arange(rx, w - rx)
    block = (ys * br // h)[:, None] * bc + (xs * bc // w)[None, :]  # (y', x')
    block = np.broadcast_to(block, xy.shape)
    hist = np.zeros((br * bc, 3, BINS))
    for k, codes in enumerate((xy, xt, yt)):
        hist[:, k, :] = np.bincount((block * BINS + codes).ravel(),
                                    minlength=br * bc * BINS).reshape(br * bc, BINS)
    sums = hist.sum(axis=2, keepdims=True)
    hist = np.divide(hist, sums, out=np.zeros_like(hist), where=sums > 0)
    return hist.ravel(), used


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    for case in manifest["cases"]:
        t, h, w = case["shape"]
        vol = np.fromfile(case["volume"], dtype=np.uint8)
        if vol.size != t * h * w:
            sys.stderr.write(f"{case['name']}: {vol.size} values, expected {t * h * w}\n")
            sys.exit(2)
        feats, used = features(vol.reshape(t, h, w), case["radius"], case["blocks"])
        feats.astype("<f8").tofile(case["out"])
        print(f"{case['name']}: {' '.join(used)}")


if __name__ == "__main__":
    main()
