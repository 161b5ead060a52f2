//! Facial action units as displacement fields, for the realistic presets.
//!
//! A micro-expression is one action unit (AU) or a few, at low intensity (Ekman and Friesen's FACS; the
//! CASME II and SAMM workbooks list them per clip). Each AU here moves the skin around a few landmark
//! positions of a frontal face: every *push* is a Gaussian bump of displacement centred on a landmark, so
//! the field is smooth, local and zero far from the landmarks, as skin moves. Positions are in face units:
//! offsets from the centre of the face crop, as a fraction of the crop's side (the skimage LFW crops put
//! the eyes near v = -0.12, the mouth corners near v = +0.27). Directions are relative: the clip's
//! amplitude (pixels) scales them.
//!
//! Every class has several AU combinations ([`variants`]), weighted roughly as the AUs occur in the
//! composite's labels (AU4 and AU12 dominate negative and positive; surprise is AU1+2), and some of them
//! share regions with another class (AU4 and AU1+2 both move the brows; AU12, AU14 and AU15 all move the lip
//! corners), so the classes are not separable by "which region moves" alone.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A FACS action unit the generator can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Au {
    /// Inner brow raiser.
    Au1,
    /// Outer brow raiser.
    Au2,
    /// Brow lowerer (brows down and together).
    Au4,
    /// Upper lid raiser.
    Au5,
    /// Cheek raiser (cheeks and lower lids up).
    Au6,
    /// Lid tightener.
    Au7,
    /// Nose wrinkler.
    Au9,
    /// Upper lip raiser.
    Au10,
    /// Lip corner puller (the smile).
    Au12,
    /// Dimpler (lip corners pulled inward; unilateral in contempt).
    Au14,
    /// Lip corner depressor.
    Au15,
    /// Chin raiser.
    Au17,
    /// Lip presser.
    Au24,
    /// Lips part.
    Au25,
    /// Blink (a nuisance here: never part of a class's variants).
    Au45,
}

/// One Gaussian bump of displacement, for the right half of the face (mirrored for the left one unless it
/// sits on the midline, `u == 0`).
struct Push {
    u: f32,
    v: f32,
    du: f32,
    dv: f32,
    sigma: f32,
}

const fn p(u: f32, v: f32, du: f32, dv: f32, sigma: f32) -> Push {
    Push {
        u,
        v,
        du,
        dv,
        sigma,
    }
}

impl Au {
    /// The FACS number.
    pub fn number(self) -> u32 {
        match self {
            Au::Au1 => 1,
            Au::Au2 => 2,
            Au::Au4 => 4,
            Au::Au5 => 5,
            Au::Au6 => 6,
            Au::Au7 => 7,
            Au::Au9 => 9,
            Au::Au10 => 10,
            Au::Au12 => 12,
            Au::Au14 => 14,
            Au::Au15 => 15,
            Au::Au17 => 17,
            Au::Au24 => 24,
            Au::Au25 => 25,
            Au::Au45 => 45,
        }
    }

    /// The skin pushes of this AU (right half; `du > 0` points away from the midline).
    fn pushes(self) -> &'static [Push] {
        match self {
            Au::Au1 => {
                const P: &[Push] = &[
                    p(0.07, -0.22, 0.0, -1.0, 0.06),
                    p(0.07, -0.31, 0.0, -0.5, 0.07),
                ];
                P
            }
            Au::Au2 => {
                const P: &[Push] = &[p(0.24, -0.21, 0.0, -1.0, 0.06)];
                P
            }
            Au::Au4 => {
                const P: &[Push] = &[
                    p(0.13, -0.20, -0.6, 0.7, 0.065),
                    p(0.0, -0.19, 0.0, 0.3, 0.04),
                ];
                P
            }
            Au::Au5 => {
                const P: &[Push] = &[p(0.19, -0.145, 0.0, -0.7, 0.035)];
                P
            }
            Au::Au6 => {
                const P: &[Push] = &[
                    p(0.22, 0.04, 0.0, -0.6, 0.08),
                    p(0.19, -0.085, 0.0, -0.4, 0.04),
                ];
                P
            }
            Au::Au7 => {
                const P: &[Push] = &[
                    p(0.19, -0.09, 0.0, -0.6, 0.035),
                    p(0.19, -0.15, 0.0, 0.2, 0.03),
                ];
                P
            }
            Au::Au9 => {
                const P: &[Push] = &[
                    p(0.07, 0.07, 0.0, -0.8, 0.05),
                    p(0.0, -0.16, 0.0, 0.4, 0.05),
                ];
                P
            }
            Au::Au10 => {
                const P: &[Push] = &[p(0.06, 0.19, 0.0, -0.7, 0.05)];
                P
            }
            Au::Au12 => {
                const P: &[Push] = &[p(0.15, 0.26, 0.6, -0.8, 0.06), p(0.2, 0.1, 0.0, -0.3, 0.07)];
                P
            }
            Au::Au14 => {
                const P: &[Push] = &[p(0.15, 0.26, -0.6, -0.1, 0.05)];
                P
            }
            Au::Au15 => {
                const P: &[Push] = &[p(0.15, 0.27, 0.0, 0.9, 0.05)];
                P
            }
            Au::Au17 => {
                const P: &[Push] = &[p(0.0, 0.43, 0.0, -0.8, 0.08), p(0.0, 0.32, 0.0, -0.4, 0.05)];
                P
            }
            Au::Au24 => {
                const P: &[Push] = &[
                    p(0.0, 0.21, 0.0, 0.35, 0.05),
                    p(0.0, 0.31, 0.0, -0.35, 0.05),
                ];
                P
            }
            Au::Au25 => {
                const P: &[Push] = &[p(0.0, 0.31, 0.0, 0.6, 0.05), p(0.0, 0.42, 0.0, 0.4, 0.08)];
                P
            }
            Au::Au45 => {
                const P: &[Push] = &[
                    p(0.19, -0.15, 0.0, 1.0, 0.035),
                    p(0.19, -0.09, 0.0, -0.25, 0.03),
                ];
                P
            }
        }
    }
}

/// An AU of a clip with its strength relative to the clip's amplitude, and the side it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuAction {
    /// The action unit.
    pub au: Au,
    /// Relative strength (the clip's amplitude times this, in pixels at the face crop's scale).
    pub strength: f32,
    /// `Some(1.0)` right only, `Some(-1.0)` left only, `None` both sides.
    pub side: Option<f32>,
}

/// The FACS string of a clip's actions, as the workbooks write it (`"4+7"`, `"R12"`).
pub fn au_string(actions: &[AuAction]) -> String {
    actions
        .iter()
        .map(|a| match a.side {
            Some(s) if s > 0.0 => format!("R{}", a.au.number()),
            Some(_) => format!("L{}", a.au.number()),
            None => a.au.number().to_string(),
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// A class's AU combinations with their weights; a `true` marks a unilateral one.
pub fn variants(megc3: Option<usize>) -> &'static [(u32, &'static [Au], bool)] {
    use Au::*;
    match megc3 {
        // Positive.
        Some(1) => &[
            (4, &[Au12], false),
            (3, &[Au6, Au12], false),
            (1, &[Au12], true),
            (1, &[Au12, Au25], false),
        ],
        // Surprise.
        Some(2) => &[
            (4, &[Au1, Au2], false),
            (1, &[Au1, Au2, Au5], false),
            (1, &[Au1], false),
            (1, &[Au2], false),
            (1, &[Au1, Au2, Au25], false),
        ],
        // Negative: the composite's negative merges disgust, repression, anger, contempt, fear, sadness.
        Some(_) => &[
            (4, &[Au4], false),
            (2, &[Au4, Au7], false),
            (1, &[Au9], false),
            (1, &[Au10], false),
            (1, &[Au14], true),
            (1, &[Au15], false),
            (1, &[Au17], false),
            (1, &[Au4, Au15], false),
            (1, &[Au24], false),
            (1, &[Au7], false),
        ],
        // Others (CASME II / SAMM only; no megc3 label).
        None => &[
            (1, &[Au25], false),
            (1, &[Au5], false),
            (1, &[Au17, Au24], false),
        ],
    }
}

/// Draws one AU combination of a class, with per-AU strengths in [0.6, 1.0] and a side for unilateral
/// ones.
pub fn draw(megc3: Option<usize>, rng: &mut ChaCha8Rng) -> Vec<AuAction> {
    let vs = variants(megc3);
    let total: u32 = vs.iter().map(|v| v.0).sum();
    let mut pick = rng.random_range(0..total);
    let mut chosen = &vs[0];
    for v in vs {
        if pick < v.0 {
            chosen = v;
            break;
        }
        pick -= v.0;
    }
    let side = if chosen.2 {
        Some(if rng.random_bool(0.5) { 1.0 } else { -1.0 })
    } else {
        None
    };
    chosen
        .1
        .iter()
        .map(|&au| AuAction {
            au,
            strength: rng.random_range(0.6..1.0),
            side,
        })
        .collect()
}

/// Where a face crop lies in a frame: its centre, side and tilt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FacePlacement {
    /// Centre x in pixels.
    pub cx: f32,
    /// Centre y in pixels.
    pub cy: f32,
    /// Side of the face crop in pixels.
    pub size: f32,
    /// Tilt in radians.
    pub roll: f32,
}

/// The displacement field of `actions` at activation `level` (pixels per unit amplitude already applied):
/// adds `(dx, dy)` in pixels into `field` (row-major `w x h`, interleaved), for a face crop of side
/// `at.size` pixels centred at `(at.cx, at.cy)` and tilted by `at.roll` radians.
pub fn add_field(
    field: &mut [(f32, f32)],
    w: usize,
    h: usize,
    at: FacePlacement,
    actions: &[(AuAction, f32)],
) {
    let FacePlacement { cx, cy, size, roll } = at;
    let (c, s) = (roll.cos(), roll.sin());
    for &(a, px) in actions {
        if px == 0.0 {
            continue;
        }
        for push in a.au.pushes() {
            let sides: &[f32] = if push.u == 0.0 { &[1.0] } else { &[1.0, -1.0] };
            for &side in sides {
                if let Some(only) = a.side {
                    if push.u != 0.0 && side != only {
                        continue;
                    }
                }
                // Landmark and direction in face units, then rotated with the head and scaled to pixels.
                let (u, v) = (side * push.u, push.v);
                let (du, dv) = (side * push.du, push.dv);
                let x0 = cx + size * (c * u - s * v);
                let y0 = cy + size * (s * u + c * v);
                let (dx, dy) = (c * du - s * dv, s * du + c * dv);
                let sig = push.sigma * size;
                let r = 3.0 * sig;
                let amp = px * a.strength;
                let xa = (x0 - r).floor().max(0.0) as usize;
                let xb = ((x0 + r).ceil().max(0.0) as usize).min(w.saturating_sub(1));
                let ya = (y0 - r).floor().max(0.0) as usize;
                let yb = ((y0 + r).ceil().max(0.0) as usize).min(h.saturating_sub(1));
                for y in ya..=yb {
                    for x in xa..=xb {
                        let d2 = (x as f32 - x0).powi(2) + (y as f32 - y0).powi(2);
                        let g = amp * (-d2 / (2.0 * sig * sig)).exp();
                        let f = &mut field[y * w + x];
                        f.0 += g * dx;
                        f.1 += g * dy;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fields_are_local_mirrored_and_unilateral_when_asked() {
        let (w, h, size) = (100, 100, 80.0);
        let act = |side| AuAction {
            au: Au::Au12,
            strength: 1.0,
            side,
        };
        let mut both = vec![(0.0, 0.0); w * h];
        let at = FacePlacement {
            cx: 50.0,
            cy: 50.0,
            size,
            roll: 0.0,
        };
        add_field(&mut both, w, h, at, &[(act(None), 2.0)]);
        // Lip corners move outward and up, symmetrically; the forehead does not move.
        let right = both[(50 + 21) * w + 62];
        let left = both[(50 + 21) * w + 38];
        assert!(right.0 > 0.5 && right.1 < -0.5, "{right:?}");
        assert!((left.0 + right.0).abs() < 1e-4 && (left.1 - right.1).abs() < 1e-4);
        assert_eq!(both[10 * w + 50], (0.0, 0.0));
        let mut one = vec![(0.0, 0.0); w * h];
        add_field(&mut one, w, h, at, &[(act(Some(1.0)), 2.0)]);
        let l = one[(50 + 21) * w + 38];
        assert!(l.0.abs() < 0.05 && l.1.abs() < 0.05, "{l:?}");
        assert_eq!(au_string(&[act(Some(1.0))]), "R12");
    }

    #[test]
    fn every_class_draws_its_own_variants() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for class in [Some(0), Some(1), Some(2), None] {
            for _ in 0..50 {
                let a = draw(class, &mut rng);
                let aus: Vec<Au> = a.iter().map(|x| x.au).collect();
                assert!(variants(class).iter().any(|v| v.1 == aus.as_slice()));
                assert!(a.iter().all(|x| (0.6..1.0).contains(&x.strength)));
            }
        }
    }
}
