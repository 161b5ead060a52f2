//! LBP-TOP (local binary patterns on three orthogonal planes; Zhao & Pietikäinen, "Dynamic texture
//! recognition using local binary patterns with an application to facial expressions", TPAMI 2007), the
//! descriptor of the MEGC2019 official baseline, computed on a clip's TIM-10 frames.
//!
//! # Definition
//!
//! The clip is a volume `V[t][y][x]` of `t` frames of `h x w` gray values. Every voxel is looked at on
//! three planes through it: XY (the frame: rows y, columns x), XT (rows t, columns x, at fixed y) and YT
//! (rows t, columns y, at fixed x). On a plane whose row axis has radius `Rr` and column axis `Rc` (XY:
//! Ry, Rx; XT: Rt, Rx; YT: Rt, Ry; the radii are `cfg.radius = [Rx, Ry, Rt]`), neighbour `p = 0..8` lies at
//! angle `2 pi p / 8` on the ellipse with those semi-axes:
//! `row offset = -Rr sin(2 pi p / 8)`, `column offset = Rc cos(2 pi p / 8)`, both rounded to 5 decimals
//! (so p = 0 is to the right, p = 2 above, counter-clockwise). Its value is the bilinear interpolation
//! of the four pixels around the sample point; bit `p` of the 8-bit code is set when that value is `>=`
//! the centre's. The code is then mapped to one of 59 bins ("non-rotation-invariant uniform", `u2`):
//! 0 for no neighbour set, 57 for all eight, 58 for every non-uniform code (more than two 0/1
//! transitions around the circle), and `1 + 8 (k - 1) + (8 - s) mod 8` for a uniform code with `k` set
//! bits (1 <= k <= 7) whose circular run of ones starts at bit `s`.
//!
//! These are exactly scikit-image's `local_binary_pattern(image, P=8, R, method='nri_uniform')`
//! conventions (neighbour angles and order, the 5-decimal rounding of the offsets, its bilinear formula
//! evaluated at the absolute sample position, the `>=` threshold and its bin numbering), so that with
//! equal radii on a plane the codes equal skimage's on that plane's image, bit for bit: the formula is
//! evaluated with the same floating-point operations, so even ties between an interpolated value and the
//! centre (frequent on flat image regions) fall the same way. Why skimage's: it is the reference
//! implementation most Python baselines use, and it lets `scripts/lbptop_reference.py` check this code
//! independently. (The MATLAB original of Zhao, and MEB's port of it, round sample points to the nearest
//! pixel instead of interpolating; with the baseline's radii of 1 on the spatial axes only the four
//! diagonal neighbours of the XY plane differ.)
//!
//! # Which centres count, and blocks
//!
//! Only centres whose whole neighbourhood lies inside the volume count: `x` in `[Rx, w - Rx)`, `y` in
//! `[Ry, h - Ry)`, `t` in `[Rt, t - Rt)`, the same set for all three planes (as in Zhao's code), so no
//! padding value ever enters a code. The `h x w` image is cut into `blocks[0]` rows x `blocks[1]` columns
//! of blocks by integer division: the pixel row `y` belongs to block row `y * blocks[0] / h` (and
//! likewise for columns), so block heights differ by at most one pixel and the remainder rows are spread
//! over the blocks instead of being dropped or piled on the last one. Blocks are assigned on the whole
//! image, before the border is excluded; an XT or YT code belongs to the block of its centre's `(x, y)`.
//! Each block gives three 59-bin histograms (XY, XT, YT), each divided by its sum; a block holding no
//! counted centre (possible only when a block is thinner than the border) gives zeros.

use mer_shared::method::LbpTopSvmConfig;
use rayon::prelude::*;

use crate::error::WorkerError;

/// Bins of the uniform-pattern histogram for 8 neighbours (58 uniform patterns + 1 for all others).
pub const UNIFORM_BINS: usize = 59;

/// Neighbours per plane (the only count implemented: 59 bins).
const NEIGHBOURS: usize = 8;

/// The bin of every 8-bit code (bit p set: neighbour p >= centre), per the module doc.
const UNIFORM_BIN: [u8; 256] = uniform_table();

const fn uniform_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0usize;
    while code < 256 {
        let ones = (code as u32).count_ones() as usize;
        // 0/1 transitions around the circle: bits that differ from their (circular) successor.
        let rotated = ((code >> 1) | ((code & 1) << 7)) & 0xff;
        let transitions = ((code ^ rotated) as u32).count_ones();
        table[code] = if ones == 0 {
            0
        } else if ones == NEIGHBOURS {
            (NEIGHBOURS * (NEIGHBOURS - 1) + 1) as u8
        } else if transitions > 2 {
            (NEIGHBOURS * (NEIGHBOURS - 1) + 2) as u8
        } else {
            // The run of ones starts at the set bit whose circular predecessor is clear.
            let mut start = 0usize;
            let mut s = 0usize;
            while s < NEIGHBOURS {
                let prev = (s + NEIGHBOURS - 1) % NEIGHBOURS;
                if (code >> s) & 1 == 1 && (code >> prev) & 1 == 0 {
                    start = s;
                }
                s += 1;
            }
            (1 + (ones - 1) * NEIGHBOURS + (NEIGHBOURS - start) % NEIGHBOURS) as u8
        };
        code += 1;
    }
    table
}

/// The bin (0..59) of an 8-bit LBP code (bit p: neighbour p >= centre).
pub fn uniform_bin(code: u8) -> usize {
    UNIFORM_BIN[code as usize] as usize
}

/// Offsets `(row, column)` of the 8 neighbours on an ellipse with semi-axes `r_row`, `r_col`, rounded to 5
/// decimals as skimage does (`np.round`: half to even).
fn neighbour_offsets(r_row: usize, r_col: usize) -> [(f64, f64); NEIGHBOURS] {
    let round5 = |v: f64| (v * 1e5).round_ties_even() / 1e5;
    let mut out = [(0.0, 0.0); NEIGHBOURS];
    for (p, o) in out.iter_mut().enumerate() {
        let angle = 2.0 * std::f64::consts::PI * p as f64 / NEIGHBOURS as f64;
        *o = (
            round5(-(r_row as f64) * angle.sin()),
            round5(r_col as f64 * angle.cos()),
        );
    }
    out
}

/// Where one neighbour samples along one axis, for every centre coordinate: the two pixel indices around
/// `coord + offset` and the weight of the upper one (skimage's floor / ceil / fraction, computed from the
/// absolute position so the rounding matches).
#[derive(Clone, Copy)]
struct Tap {
    lo: usize,
    hi: usize,
    frac: f64,
}

/// `taps[p][c]`: neighbour `p`'s taps along an axis of length `n` for centre coordinate `c` (all `c`;
/// only interior ones are used, for which the indices lie inside `0..n`).
fn axis_taps(n: usize, offsets: impl Fn(usize) -> f64) -> Vec<Vec<Tap>> {
    (0..NEIGHBOURS)
        .map(|p| {
            let off = offsets(p);
            (0..n)
                .map(|c| {
                    let pos = c as f64 + off;
                    let lo = pos.floor();
                    let hi = pos.ceil();
                    // Clamped only so that border entries (never read) stay valid indices.
                    let clamp = |v: f64| (v.max(0.0) as usize).min(n.saturating_sub(1));
                    Tap {
                        lo: clamp(lo),
                        hi: clamp(hi),
                        frac: pos - lo,
                    }
                })
                .collect()
        })
        .collect()
}

/// skimage's bilinear formula: `(1 - dr) * ((1 - dc) * a + dc * b) + dr * ((1 - dc) * c + dc * d)`.
#[inline(always)]
fn bilinear(get: impl Fn(usize, usize) -> f64, r: Tap, c: Tap) -> f64 {
    let top = (1.0 - c.frac) * get(r.lo, c.lo) + c.frac * get(r.lo, c.hi);
    let bottom = (1.0 - c.frac) * get(r.hi, c.lo) + c.frac * get(r.hi, c.hi);
    (1.0 - r.frac) * top + r.frac * bottom
}

fn option_error(option: &str, message: String) -> WorkerError {
    WorkerError::InvalidOption {
        option: option.to_string(),
        message,
    }
}

/// Checks [`lbptop_features`]' input: `len` values for a `t` x `h` x `w` clip, and `cfg`'s neighbours,
/// radius and blocks for that size.
fn check_input(
    len: usize,
    t: usize,
    h: usize,
    w: usize,
    cfg: &LbpTopSvmConfig,
) -> Result<(), WorkerError> {
    let expected = t.checked_mul(h).and_then(|v| v.checked_mul(w));
    if expected != Some(len) {
        return Err(option_error(
            "frames",
            format!(
                "{len} values given for a {t} x {h} x {w} clip (t x h x w = {})",
                expected.map_or_else(|| "overflow".to_string(), |v| v.to_string())
            ),
        ));
    }
    if cfg.neighbours != NEIGHBOURS {
        return Err(option_error(
            "methods.lbptop_svm.neighbours",
            format!(
                "neighbours = {}: only 8 (59 uniform-pattern bins) is implemented",
                cfg.neighbours
            ),
        ));
    }
    let [rx, ry, rt] = cfg.radius;
    for (axis, r, n) in [("x", rx, w), ("y", ry, h), ("t", rt, t)] {
        if r == 0 {
            return Err(option_error(
                "methods.lbptop_svm.radius",
                format!(
                    "radius {:?}: the {axis} radius must be at least 1",
                    cfg.radius
                ),
            ));
        }
        if r.saturating_mul(2) >= n {
            return Err(option_error(
                "methods.lbptop_svm.radius",
                format!(
                    "radius {:?}: the {axis} radius {r} leaves no interior pixel on an axis of {n} \
                     (needs more than 2 x {r})",
                    cfg.radius
                ),
            ));
        }
    }
    let [br, bc] = cfg.blocks;
    for (axis, b, n) in [("rows", br, h), ("columns", bc, w)] {
        if b == 0 || b > n {
            return Err(option_error(
                "methods.lbptop_svm.blocks",
                format!(
                    "blocks {:?}: {b} block {axis} for an image of {n} {axis} (must be 1..={n})",
                    cfg.blocks
                ),
            ));
        }
    }
    Ok(())
}

/// Sums the per-pixel-row counts (block row, counts[block column][plane][bin]) into `br` x `bc` blocks
/// and normalises each histogram to sum 1 (all zeros when empty).
fn block_histograms(per_row: Vec<(usize, Vec<u32>)>, br: usize, bc: usize) -> Vec<f32> {
    let mut totals = vec![0u64; br * bc * 3 * UNIFORM_BINS];
    let row_len = bc * 3 * UNIFORM_BINS;
    for (block_row, counts) in per_row {
        let dst = &mut totals[block_row * row_len..(block_row + 1) * row_len];
        for (d, c) in dst.iter_mut().zip(counts) {
            *d += u64::from(c);
        }
    }
    let mut out = Vec::with_capacity(totals.len());
    for hist in totals.chunks(UNIFORM_BINS) {
        let sum: u64 = hist.iter().sum();
        if sum == 0 {
            out.extend(std::iter::repeat_n(0.0f32, UNIFORM_BINS));
        } else {
            out.extend(hist.iter().map(|&c| (c as f64 / sum as f64) as f32));
        }
    }
    out
}

/// LBP-TOP feature of one clip: `frames` is `t * h * w` u8 gray values (frame-major, row-major), as the
/// prepared file's `tim10` group stores them. Returns blocks[0]*blocks[1]*3*59 values: for each block
/// (row-major), the XY, XT and YT histograms, each normalised to sum 1.
///
/// Errors (`InvalidOption`, naming the value): a `frames` length other than `t * h * w`, a neighbour count
/// other than 8, a zero radius, a radius that leaves no interior centre on its axis (`2 R >= length`), a
/// zero block count or more blocks than pixels on an axis.
pub fn lbptop_features(
    frames: &[u8],
    t: usize,
    h: usize,
    w: usize,
    cfg: &LbpTopSvmConfig,
) -> Result<Vec<f32>, WorkerError> {
    check_input(frames.len(), t, h, w, cfg)?;
    let [rx, ry, rt] = cfg.radius;
    let [br, bc] = cfg.blocks;

    let plane = h * w;
    let v = |ti: usize, yi: usize, xi: usize| frames[ti * plane + yi * w + xi] as f64;
    // Taps: XY (rows y radius Ry, columns x radius Rx), XT (rows t radius Rt, columns x radius Rx),
    // YT (rows t radius Rt, columns y radius Ry).
    let xy = neighbour_offsets(ry, rx);
    let xt = neighbour_offsets(rt, rx);
    let yt = neighbour_offsets(rt, ry);
    let xy_rows = axis_taps(h, |p| xy[p].0);
    let xy_cols = axis_taps(w, |p| xy[p].1);
    let xt_rows = axis_taps(t, |p| xt[p].0);
    let xt_cols = axis_taps(w, |p| xt[p].1);
    let yt_rows = axis_taps(t, |p| yt[p].0);
    let yt_cols = axis_taps(h, |p| yt[p].1);
    let col_block: Vec<usize> = (0..w).map(|x| x * bc / w).collect();

    // One pixel row y at a time (in parallel): counts[block column][plane][bin].
    let per_row: Vec<(usize, Vec<u32>)> = (ry..h - ry)
        .into_par_iter()
        .map(|y| {
            let mut counts = vec![0u32; bc * 3 * UNIFORM_BINS];
            for ti in rt..t - rt {
                for x in rx..w - rx {
                    let centre = v(ti, y, x);
                    let (mut c_xy, mut c_xt, mut c_yt) = (0u8, 0u8, 0u8);
                    for p in 0..NEIGHBOURS {
                        let s_xy = bilinear(|r, c| v(ti, r, c), xy_rows[p][y], xy_cols[p][x]);
                        let s_xt = bilinear(|r, c| v(r, y, c), xt_rows[p][ti], xt_cols[p][x]);
                        let s_yt = bilinear(|r, c| v(r, c, x), yt_rows[p][ti], yt_cols[p][y]);
                        c_xy |= u8::from(s_xy - centre >= 0.0) << p;
                        c_xt |= u8::from(s_xt - centre >= 0.0) << p;
                        c_yt |= u8::from(s_yt - centre >= 0.0) << p;
                    }
                    let base = col_block[x] * 3 * UNIFORM_BINS;
                    counts[base + uniform_bin(c_xy)] += 1;
                    counts[base + UNIFORM_BINS + uniform_bin(c_xt)] += 1;
                    counts[base + 2 * UNIFORM_BINS + uniform_bin(c_yt)] += 1;
                }
            }
            (y * br / h, counts)
        })
        .collect();

    Ok(block_histograms(per_row, br, bc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn cfg(blocks: [usize; 2], radius: [usize; 3]) -> LbpTopSvmConfig {
        LbpTopSvmConfig {
            blocks,
            radius,
            ..LbpTopSvmConfig::default()
        }
    }

    #[test]
    fn uniform_table_has_59_bins_each_used_by_the_right_number_of_codes() {
        let mut uses = [0usize; UNIFORM_BINS];
        for code in 0..=255u8 {
            uses[uniform_bin(code)] += 1;
        }
        // 58 uniform patterns, one code each; the other 198 codes share bin 58.
        assert!(uses[..58].iter().all(|&u| u == 1), "{uses:?}");
        assert_eq!(uses[58], 256 - 58);
        assert_eq!(uniform_bin(0), 0);
        assert_eq!(uniform_bin(0xff), 57);
        // k ones starting at bit 0 -> rotation 0; starting at bit s -> rotation 8 - s.
        assert_eq!(uniform_bin(0b0000_0001), 1);
        assert_eq!(uniform_bin(0b0000_0010), 8);
        assert_eq!(uniform_bin(0b1000_0000), 2);
        assert_eq!(uniform_bin(0b0000_0111), 1 + 2 * 8);
        assert_eq!(uniform_bin(0b1000_0011), 1 + 2 * 8 + 1); // run 7,0,1 starts at 7
        assert_eq!(uniform_bin(0b0101_0101), 58);
    }

    #[test]
    fn offsets_follow_skimage_angles_and_rounding() {
        // cos(pi / 4) rounded to 5 decimals (as numpy's np.round(x, 5) gives it).
        let diag = 70_711.0 / 1e5;
        let o = neighbour_offsets(1, 1);
        assert_eq!(o[0], (0.0, 1.0));
        assert_eq!(o[1], (-diag, diag));
        assert_eq!(o[2], (-1.0, 0.0));
        assert_eq!(o[4], (0.0, -1.0));
        assert_eq!(o[6], (1.0, 0.0));
        let e = neighbour_offsets(4, 1);
        assert_eq!(e[2], (-4.0, 0.0));
        assert_eq!(e[3], (-2.82843, -diag));
    }

    #[test]
    fn constant_volume_puts_all_mass_in_the_all_ones_bin() {
        let (t, h, w) = (5, 12, 10);
        let frames = vec![77u8; t * h * w];
        let f = lbptop_features(&frames, t, h, w, &cfg([2, 2], [1, 1, 2])).unwrap();
        assert_eq!(f.len(), 2 * 2 * 3 * UNIFORM_BINS);
        for hist in f.chunks(UNIFORM_BINS) {
            assert_eq!(hist[57], 1.0);
            assert_eq!(hist.iter().sum::<f32>(), 1.0);
        }
    }

    #[test]
    fn known_3x3_neighbourhood_gives_its_code() {
        // A 3 x 3 x 3 volume: one interior centre (t, y, x) = (1, 1, 1), radii 1, centre value 50, two
        // pixels of 200 in its frame (right of and above the centre), every other voxel 0.
        let mut frames = vec![0u8; 27];
        let at = |t: usize, y: usize, x: usize| t * 9 + y * 3 + x;
        frames[at(1, 1, 1)] = 50;
        frames[at(1, 1, 2)] = 200; // XY: right, p = 0
        frames[at(1, 0, 1)] = 200; // XY: above, p = 2
        let f = lbptop_features(&frames, 3, 3, 3, &cfg([1, 1], [1, 1, 1])).unwrap();
        // XY: p = 0 and p = 2 hit the 200s. p = 1 (up-right) samples at row 0.29289, column 1.70711:
        // 0.70711 * (0.29289 * 200) + 0.29289 * (0.29289 * 50 + 0.70711 * 200) = 87.1 >= 50: set.
        // p = 3 and p = 7 each mix one 200 and the centre: 41.4 + 4.3 = 45.7 < 50. Code 0b111: a run of
        // three ones from bit 0 -> bin 1 + 2 * 8 + 0.
        assert_eq!(f[1 + 2 * 8], 1.0, "XY histogram {:?}", &f[..UNIFORM_BINS]);
        // XT at y = 1 (rows t, columns x): only the right pixel (t 1, x 2) is larger; its diagonal
        // neighbours p = 1, 7 give 0.29289 * (0.29289 * 50 + 0.70711 * 200) = 45.7 < 50. Code 1 -> bin 1.
        assert_eq!(f[UNIFORM_BINS + 1], 1.0);
        // YT at x = 1 (rows t, columns y): the 200 at y = 0 is the column -1 neighbour, p = 4. Code
        // 0b1_0000: one 1 starting at bit 4 -> bin 1 + (8 - 4).
        assert_eq!(f[2 * UNIFORM_BINS + uniform_bin(0b0001_0000)], 1.0);
        assert_eq!(uniform_bin(0b0001_0000), 5);
    }

    #[test]
    fn output_length_and_normalisation() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (t, h, w) = (10, 37, 29);
        let frames: Vec<u8> = (0..t * h * w).map(|_| rng.random()).collect();
        let f = lbptop_features(&frames, t, h, w, &LbpTopSvmConfig::default()).unwrap();
        assert_eq!(f.len(), 5 * 5 * 3 * UNIFORM_BINS);
        for hist in f.chunks(UNIFORM_BINS) {
            assert!((hist.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn empty_border_block_gives_zeros() {
        // h = 6 in 3 block rows of 2: y radius 2 leaves only y = 2, 3 -> the first and last block rows
        // hold no counted centre.
        let frames = vec![9u8; 5 * 6 * 6];
        let f = lbptop_features(&frames, 5, 6, 6, &cfg([3, 1], [1, 2, 1])).unwrap();
        let per_block = 3 * UNIFORM_BINS;
        assert!(f[..per_block].iter().all(|&v| v == 0.0));
        assert_eq!(f[per_block + 57], 1.0);
        assert!(f[2 * per_block..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn errors_name_the_bad_value() {
        let frames = vec![0u8; 10 * 8 * 8];
        let err = |r: Result<Vec<f32>, WorkerError>| r.unwrap_err().to_string();
        let e = err(lbptop_features(
            &frames[1..],
            10,
            8,
            8,
            &cfg([2, 2], [1, 1, 4]),
        ));
        assert!(e.contains("639") && e.contains("640"), "{e}");
        let e = err(lbptop_features(&frames, 10, 8, 8, &cfg([2, 2], [1, 1, 5])));
        assert!(e.contains("t radius 5") && e.contains("no interior"), "{e}");
        let e = err(lbptop_features(&frames, 10, 8, 8, &cfg([2, 2], [4, 1, 1])));
        assert!(e.contains("x radius 4"), "{e}");
        let e = err(lbptop_features(&frames, 10, 8, 8, &cfg([2, 2], [0, 1, 1])));
        assert!(e.contains("at least 1"), "{e}");
        let e = err(lbptop_features(&frames, 10, 8, 8, &cfg([9, 2], [1, 1, 1])));
        assert!(e.contains("9 block rows"), "{e}");
        let e = err(lbptop_features(&frames, 10, 8, 8, &cfg([2, 0], [1, 1, 1])));
        assert!(e.contains("0 block columns"), "{e}");
        let mut c = cfg([2, 2], [1, 1, 1]);
        c.neighbours = 16;
        let e = err(lbptop_features(&frames, 10, 8, 8, &c));
        assert!(e.contains("neighbours = 16"), "{e}");
        let e = err(lbptop_features(&frames, usize::MAX, 2, 2, &c));
        assert!(e.contains("overflow"), "{e}");
    }

    /// The cost of the whole composite: 442 clips of 10 x 112 x 112 at the default settings.
    /// `cargo test -p mer-worker --release --lib baselines::lbptop -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_composite_442_clips() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (t, h, w) = (10, 112, 112);
        let clips: Vec<Vec<u8>> = (0..16)
            .map(|_| (0..t * h * w).map(|_| rng.random()).collect())
            .collect();
        let cfg = LbpTopSvmConfig::default();
        let start = std::time::Instant::now();
        let n: usize = (0..442)
            .into_par_iter()
            .map(|i| {
                lbptop_features(&clips[i % clips.len()], t, h, w, &cfg)
                    .unwrap()
                    .len()
            })
            .sum();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "442 clips of {t}x{h}x{w}: {secs:.3} s ({} threads, {n} values)",
            rayon::current_num_threads()
        );
    }
}
