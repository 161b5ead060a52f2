//! The procedural ("cartoon") faces of the `tiny`, `mini` and `composite` presets: soft (anti-aliased,
//! sub-pixel) shapes drawn per subject, one class-specific action per clip (see the module docs of
//! [`super`]). Kept exactly as it was when the realistic presets were added, so that those presets give the
//! same clips from the same seed.

use super::{Action, ClipTruth};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Per-subject face appearance.
#[derive(Debug, Clone)]
pub(super) struct Face {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) cx: f32,
    pub(super) cy: f32,
    pub(super) a: f32,
    pub(super) b: f32,
    pub(super) skin: f32,
    pub(super) bg: f32,
    pub(super) bg_grad: f32,
    pub(super) light: (f32, f32),
    pub(super) tex: [(f32, f32, f32, f32); 3],
    pub(super) eye_dx: f32,
    pub(super) eye_y: f32,
    pub(super) brow_y: f32,
    pub(super) mouth_y: f32,
    pub(super) mouth_w: f32,
    pub(super) dark: f32,
}

impl Face {
    pub(super) fn random(rng: &mut ChaCha8Rng, w: usize, h: usize) -> Self {
        let b = h as f32 * rng.random_range(0.36..0.40);
        let a = b * rng.random_range(0.74..0.82);
        let mut tex = [(0.0, 0.0, 0.0, 0.0); 3];
        for t in tex.iter_mut() {
            *t = (
                rng.random_range(0.15..0.6),
                rng.random_range(0.15..0.6),
                rng.random_range(0.0..std::f32::consts::TAU),
                rng.random_range(0.015..0.035),
            );
        }
        Face {
            w,
            h,
            cx: w as f32 / 2.0 + rng.random_range(-0.03..0.03) * w as f32,
            cy: h as f32 * rng.random_range(0.50..0.54),
            a,
            b,
            skin: rng.random_range(150.0..200.0),
            bg: rng.random_range(35.0..75.0),
            bg_grad: rng.random_range(-20.0..20.0),
            light: (rng.random_range(-0.12..0.12), rng.random_range(-0.08..0.04)),
            tex,
            eye_dx: rng.random_range(0.34..0.40),
            eye_y: rng.random_range(-0.18..-0.12),
            brow_y: rng.random_range(-0.40..-0.34),
            mouth_y: rng.random_range(0.48..0.55),
            mouth_w: rng.random_range(0.20..0.26),
            dark: rng.random_range(0.5..0.65),
        }
    }
}

/// The cartoon look of one clip: its action's amplitude and the label-free distractors.
#[derive(Debug, Clone)]
pub(super) struct CartoonClip {
    pub(super) amplitude: f32,
    pub(super) blink: Option<(f32, f32)>,
    pub(super) jitter: [(f32, f32, f32); 4],
    pub(super) drift: (f32, f32),
}

fn smoothstep(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Action intensity at frame t: 0 before onset, smooth rise to 1 at the apex, decay to 0.2 at the offset,
/// then back to 0 over 10 frames.
pub(super) fn intensity(t: f32, on: f32, ap: f32, off: f32) -> f32 {
    if t <= on {
        0.0
    } else if t <= ap {
        if ap > on {
            smoothstep((t - on) / (ap - on))
        } else {
            1.0
        }
    } else if t <= off {
        1.0 - 0.8 * smoothstep((t - ap) / (off - ap).max(1.0))
    } else {
        0.2 * (1.0 - (t - off) / 10.0).max(0.0)
    }
}

/// The frame being drawn: grey levels `w` x `h`, row-major.
struct Canvas<'a> {
    /// The pixels.
    img: &'a mut [f32],
    /// Width in pixels.
    w: usize,
    /// Height in pixels.
    h: usize,
}

impl Canvas<'_> {
    /// A soft ellipse feature: multiplies pixels by (1 - dark * weight), weight 1 inside, 0 outside, with
    /// a 1-pixel soft edge (so sub-pixel motion changes pixel values smoothly).
    fn blob(&mut self, x0: f32, y0: f32, rx: f32, ry: f32, angle: f32, dark: f32) {
        let (img, w, h) = (&mut *self.img, self.w, self.h);
        let (rx, ry) = (rx.max(0.5), ry.max(0.5));
        let r = rx.max(ry) + 2.0;
        let (c, s) = (angle.cos(), angle.sin());
        let xa = ((x0 - r).floor().max(0.0)) as usize;
        let xb = ((x0 + r).ceil().min(w as f32 - 1.0)).max(0.0) as usize;
        let ya = ((y0 - r).floor().max(0.0)) as usize;
        let yb = ((y0 + r).ceil().min(h as f32 - 1.0)).max(0.0) as usize;
        for y in ya..=yb {
            for x in xa..=xb {
                let (dx, dy) = (x as f32 - x0, y as f32 - y0);
                let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
                // Approximate distance to the ellipse boundary in pixels.
                let q = ((u / rx).powi(2) + (v / ry).powi(2)).sqrt();
                let dist = (q - 1.0) * rx.min(ry);
                let wgt = (0.5 - dist).clamp(0.0, 1.0);
                if wgt > 0.0 {
                    img[y * w + x] *= 1.0 - dark * wgt;
                }
            }
        }
    }
}

/// Renders frame `t` of a clip (grey levels 0..255, before noise).
pub(super) fn render(
    face: &Face,
    tr: &ClipTruth,
    fps: u32,
    p: &CartoonClip,
    t: u32,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let (w, h) = (face.w, face.h);
    let tf = t as f32;
    let s = intensity(tf, tr.onset as f32, tr.apex as f32, tr.offset as f32);
    let (jx, jy, gain) = head_motion(p, tf, fps);
    let (cx, cy) = (face.cx + jx, face.cy + jy);
    let mut img = paint_head(face, cx, cy);
    let amp = p.amplitude;
    let act = tr.action;
    let on = |a2: Action| {
        let main = if act == a2 { s } else { 0.0 };
        match tr.co_action {
            Some((co, k)) if co == a2 => main + k * s,
            _ => main,
        }
    };
    // Blink: eye openness.
    let open = match p.blink {
        Some((c, d)) => 1.0 - 0.85 * (1.0 - ((tf - c) / d).abs()).max(0.0),
        None => 1.0,
    };
    let features = Features {
        face,
        cx,
        cy,
        amp,
        open,
        on: &on,
    };
    let mut canvas = Canvas {
        img: &mut img,
        w,
        h,
    };
    for side in [-1.0f32, 1.0] {
        features.draw_side(&mut canvas, side);
    }
    features.draw_middle(&mut canvas);
    // Illumination drift and sensor noise.
    let noise = Normal::new(0.0f32, 2.0).unwrap_or_else(|_| unreachable!());
    for v in img.iter_mut() {
        *v = (*v * gain + noise.sample(rng)).clamp(0.0, 255.0);
    }
    img
}

/// The head's offset (x, y) at frame time `tf` (smooth jitter) and the illumination gain (drift).
fn head_motion(p: &CartoonClip, tf: f32, fps: u32) -> (f32, f32, f32) {
    // Smooth head jitter (time in seconds so that it is the same physical motion at any fps).
    let sec = tf / fps as f32;
    let (mut jx, mut jy) = (0.0, 0.0);
    for (k, &(amp, freq, ph)) in p.jitter.iter().enumerate() {
        let v = amp * (std::f32::consts::TAU * freq * sec + ph).sin();
        if k % 2 == 0 {
            jx += v;
        } else {
            jy += v;
        }
    }
    let gain = 1.0 + p.drift.0 * (std::f32::consts::TAU * sec * 1.3 + p.drift.1).sin();
    (jx, jy, gain)
}

/// The background, the head's skin (shading, texture) and hair; the head is centred at `cx`, `cy`.
fn paint_head(face: &Face, cx: f32, cy: f32) -> Vec<f32> {
    let (w, h) = (face.w, face.h);
    let (a, b) = (face.a, face.b);
    let mut img = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = ((x as f32 - cx) / a, (y as f32 - cy) / b);
            let r = (u * u + v * v).sqrt();
            let bgv = face.bg + face.bg_grad * (x as f32 / w as f32 - 0.5);
            // Soft face edge (about 1.5 px).
            let m = ((1.0 - r) * a.min(b) / 1.5 + 0.5).clamp(0.0, 1.0);
            let mut tex = 0.0;
            for &(fx, fy, ph, amp) in &face.tex {
                tex += amp * (fx * u * a * 0.25 + fy * v * b * 0.25 + ph).sin();
            }
            let shade = 1.0 - 0.22 * r * r + face.light.0 * u + face.light.1 * v;
            let skin = face.skin * shade * (1.0 + tex);
            // Hair: darker band over the top of the head.
            let hair = if v < -0.62 {
                smoothstep((-0.62 - v) / 0.1) * 0.55
            } else {
                0.0
            };
            img[y * w + x] = bgv * (1.0 - m) + skin * (1.0 - hair) * m;
        }
    }
    img
}

/// The facial features of one frame: the face, its centre, the action amplitude, each action's
/// activation (`on`) and the eyes' openness.
struct Features<'a> {
    /// The subject's face.
    face: &'a Face,
    /// Head centre x in this frame.
    cx: f32,
    /// Head centre y in this frame.
    cy: f32,
    /// The clip's action amplitude in pixels.
    amp: f32,
    /// Eye openness (blink).
    open: f32,
    /// Activation of an action in this frame.
    on: &'a dyn Fn(Action) -> f32,
}

impl Features<'_> {
    /// Brow, eye, nostril, cheek and lip corner of one side (`side` -1: left, 1: right).
    fn draw_side(&self, canvas: &mut Canvas, side: f32) {
        let (face, cx, cy, amp, open, on) =
            (self.face, self.cx, self.cy, self.amp, self.open, self.on);
        let (a, b, d) = (face.a, face.b, face.dark);
        // Brows.
        let (bdx, bdy) = (
            -side * 0.45 * amp * on(Action::BrowLower),
            0.8 * amp * on(Action::BrowLower) - 1.2 * amp * on(Action::BrowRaise),
        );
        let tilt = side * 0.08 + side * 0.15 * on(Action::BrowLower);
        canvas.blob(
            cx + side * face.eye_dx * a + bdx,
            cy + face.brow_y * b + bdy,
            0.21 * a,
            0.045 * b,
            tilt,
            d,
        );
        // Eyes: socket shadow, bright sclera, dark iris, upper lid line.
        let ey = cy + face.eye_y * b;
        let widen = 1.0 + 0.3 * on(Action::BrowRaise);
        let ex = cx + side * face.eye_dx * a;
        let eh = 0.065 * b * open * widen;
        canvas.blob(ex, ey - 0.01 * b, 0.2 * a, 0.11 * b, 0.0, 0.18);
        canvas.blob(ex, ey, 0.15 * a, eh, 0.0, -0.35);
        canvas.blob(ex, ey, 0.06 * a, eh.min(0.06 * a), 0.0, 0.8);
        canvas.blob(ex, ey - eh, 0.16 * a, 0.018 * b, 0.0, 0.55);
        // Nostrils (up with the nose wrinkle).
        canvas.blob(
            cx + side * 0.09 * a,
            cy + 0.24 * b - 1.0 * amp * on(Action::NoseWrinkle),
            0.05 * a,
            0.03 * b,
            0.0,
            0.45,
        );
        // Cheeks: slight highlight, raised with the smile.
        canvas.blob(
            cx + side * 0.45 * a,
            cy + 0.2 * b - 0.5 * amp * on(Action::LipCornerPull),
            0.17 * a,
            0.11 * b,
            0.0,
            -0.06,
        );
        // Lip corners.
        let ldx = side * 0.6 * amp * on(Action::LipCornerPull);
        let ldy = -amp * on(Action::LipCornerPull) + 1.3 * amp * on(Action::LipCornerDepress)
            - 0.6 * amp * on(Action::ChinRaise);
        canvas.blob(
            cx + side * (face.mouth_w + 0.06) * a + ldx,
            cy + face.mouth_y * b + ldy,
            0.08 * a,
            0.035 * b,
            side * 0.2,
            d * 0.9,
        );
    }

    /// The nose ridge, the crease of the nose wrinkle and the mouth.
    fn draw_middle(&self, canvas: &mut Canvas) {
        let (face, cx, cy, amp, on) = (self.face, self.cx, self.cy, self.amp, self.on);
        let (a, b, d) = (face.a, face.b, face.dark);
        // Nose ridge highlight and the crease of the nose wrinkle.
        canvas.blob(cx, cy + 0.02 * b, 0.07 * a, 0.22 * b, 0.0, -0.08);
        canvas.blob(
            cx,
            cy + (face.eye_y - 0.02) * b,
            0.09 * a,
            0.02 * b,
            0.0,
            0.45 * on(Action::NoseWrinkle),
        );
        // Mouth (moves up with the chin raise).
        canvas.blob(
            cx,
            cy + face.mouth_y * b - 0.6 * amp * on(Action::ChinRaise),
            face.mouth_w * a,
            0.045 * b,
            0.0,
            d,
        );
    }
}
