//! Optical strain of a dense flow field (the third input channel of STSTNet).
//!
//! A flow field d = (u, v) is a displacement field, so its deformation is the infinitesimal strain tensor
//! of continuum mechanics, e = 1/2 (grad d + grad d^T):
//!
//! ```text
//!     | e_xx  e_xy |   |        u_x          1/2 (u_y + v_x) |
//! e = |            | = |                                     |
//!     | e_yx  e_yy |   | 1/2 (v_x + u_y)            v_y      |
//! ```
//!
//! Its magnitude is the Frobenius norm, |e| = sqrt(e_xx^2 + e_yy^2 + e_xy^2 + e_yx^2)
//! = sqrt(u_x^2 + v_y^2 + 1/2 (u_y + v_x)^2). This is the optical strain map of Liong et al. (optical strain
//! for micro-expressions, and STSTNet: "Shallow Triple Stream Three-dimensional CNN (STSTNet) for
//! micro-expression recognition", FG 2019, whose third input channel is this magnitude of the onset->apex
//! flow). A rigid translation has zero strain; a rotation has zero strain too (only its antisymmetric part
//! is non-zero, which e drops).
//!
//! Derivatives are finite differences on the pixel grid (unit spacing): central differences
//! (f[i+1] - f[i-1]) / 2 inside, one-sided (f[1] - f[0], f[n-1] - f[n-2]) at the borders, 0 along an axis of
//! length 1 (the convention of `numpy.gradient` with `edge_order=1`).

/// Optical strain magnitude of a flow field (u, v: h*w row-major, pixels/frame):
/// sqrt(ux^2 + vy^2 + 0.5*(uy + vx)^2) with central differences inside and one-sided differences at the
/// border (x = column, y = row). Returns h*w values, row-major.
///
/// # Panics
/// If `u` or `v` does not hold exactly `h * w` values (a caller bug, not an input condition).
pub fn optical_strain(u: &[f32], v: &[f32], h: usize, w: usize) -> Vec<f32> {
    assert_eq!(u.len(), h * w, "optical_strain: u has the wrong length");
    assert_eq!(v.len(), h * w, "optical_strain: v has the wrong length");
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let ux = d_dx(u, w, y, x);
            let uy = d_dy(u, h, w, y, x);
            let vx = d_dx(v, w, y, x);
            let vy = d_dy(v, h, w, y, x);
            let shear = uy + vx;
            out.push((ux * ux + vy * vy + 0.5 * shear * shear).sqrt());
        }
    }
    out
}

/// Derivative along x (columns) at (y, x).
fn d_dx(f: &[f32], w: usize, y: usize, x: usize) -> f32 {
    let at = |xx: usize| f[y * w + xx];
    derivative(w, x, at)
}

/// Derivative along y (rows) at (y, x).
fn d_dy(f: &[f32], h: usize, w: usize, y: usize, x: usize) -> f32 {
    let at = |yy: usize| f[yy * w + x];
    derivative(h, y, at)
}

/// Finite difference at index `i` of a line of `n` samples read through `at`.
fn derivative(n: usize, i: usize, at: impl Fn(usize) -> f32) -> f32 {
    if n < 2 {
        0.0
    } else if i == 0 {
        at(1) - at(0)
    } else if i == n - 1 {
        at(n - 1) - at(n - 2)
    } else {
        0.5 * (at(i + 1) - at(i - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// u = a x^2 + b y, v = c x y on a h x w grid.
    fn field(h: usize, w: usize, a: f32, b: f32, c: f32) -> (Vec<f32>, Vec<f32>) {
        let mut u = Vec::new();
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32, y as f32);
                u.push(a * xf * xf + b * yf);
                v.push(c * xf * yf);
            }
        }
        (u, v)
    }

    #[test]
    fn strain_matches_hand_computed_differences() {
        let (h, w) = (4, 5);
        let (a, b, c) = (0.3f32, -0.7f32, 0.2f32);
        let (u, v) = field(h, w, a, b, c);
        let s = optical_strain(&u, &v, h, w);
        assert_eq!(s.len(), h * w);

        // Interior pixel (x = 2, y = 1): central differences are exact for these polynomials:
        // ux = ((a*9) - (a*1)) / 2 = 2a*x = 4a; uy = b; vx = c*y = c; vy = c*x = 2c.
        let (ux, uy, vx, vy) = (4.0 * a, b, c, 2.0 * c);
        let want = (ux * ux + vy * vy + 0.5 * (uy + vx) * (uy + vx)).sqrt();
        assert!((s[w + 2] - want).abs() < 1e-6, "{} vs {want}", s[w + 2]);

        // Left border pixel (x = 0, y = 2): forward difference in x, central in y:
        // ux = a*1 - a*0 = a (the analytic value would be 0); vx = c*y*(1 - 0) = 2c; uy = b; vy = c*0 = 0.
        let (ux, uy, vx, vy) = (a, b, 2.0 * c, 0.0);
        let want = (ux * ux + vy * vy + 0.5 * (uy + vx) * (uy + vx)).sqrt();
        assert!((s[2 * w] - want).abs() < 1e-6, "{} vs {want}", s[2 * w]);

        // Bottom-right corner (x = 4, y = 3): backward differences in both axes:
        // ux = a*16 - a*9 = 7a; uy = b; vx = c*3*(4 - 3) = 3c; vy = c*4*(3 - 2) = 4c.
        let (ux, uy, vx, vy) = (7.0 * a, b, 3.0 * c, 4.0 * c);
        let want = (ux * ux + vy * vy + 0.5 * (uy + vx) * (uy + vx)).sqrt();
        assert!((s[h * w - 1] - want).abs() < 1e-6);
    }

    #[test]
    fn zero_field_translation_and_rotation_have_no_strain() {
        let (h, w) = (6, 7);
        let zero = vec![0.0f32; h * w];
        assert!(optical_strain(&zero, &zero, h, w).iter().all(|&s| s == 0.0));
        let u = vec![1.5f32; h * w];
        let v = vec![-0.25f32; h * w];
        assert!(optical_strain(&u, &v, h, w).iter().all(|&s| s == 0.0));
        // Infinitesimal rotation: u = -y, v = x (u_y = -1, v_x = 1 cancel in the symmetric part).
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for y in 0..h {
            for x in 0..w {
                u.push(-(y as f32));
                v.push(x as f32);
            }
        }
        assert!(optical_strain(&u, &v, h, w).iter().all(|&s| s.abs() < 1e-6));
    }

    #[test]
    fn degenerate_sizes() {
        assert!(optical_strain(&[], &[], 0, 0).is_empty());
        // A single row: y-derivatives are 0; u = x gives ux = 1 everywhere.
        let u = [0.0f32, 1.0, 2.0];
        let v = [0.0f32; 3];
        assert_eq!(optical_strain(&u, &v, 1, 3), vec![1.0, 1.0, 1.0]);
    }
}
