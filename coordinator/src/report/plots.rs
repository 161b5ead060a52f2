//! PNG plots of a report (plotters' bitmap backend, encoded with the `png` crate): confusion matrices,
//! line plots (training curves, the alpha sweep of Fig. 4).
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` renderer, so no fontconfig/freetype is needed; it
//! needs one TrueType file at run time: `$MER_FONT`, or DejaVu Sans / Liberation Sans from the usual
//! Debian paths (`fonts-dejavu-core`, installed by `scripts/bootstrap.sh`). Without any, plotting fails
//! with an error that says so.

use crate::error::CoordError;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::sync::OnceLock;

/// Font files tried in order after `$MER_FONT`.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// The font family name plots use (registered from the font file).
const FAMILY: &str = "sans-serif";

static FONT: OnceLock<Result<String, String>> = OnceLock::new();

/// Registers the plot font once; returns the file used.
pub fn ensure_font() -> Result<String, CoordError> {
    FONT.get_or_init(|| {
        let mut tried = Vec::new();
        let env = std::env::var("MER_FONT").ok().filter(|s| !s.is_empty());
        for cand in env.iter().map(String::as_str).chain(FONT_CANDIDATES.iter().copied()) {
            tried.push(cand.to_string());
            let Ok(bytes) = std::fs::read(cand) else { continue };
            // Registered fonts live for the whole process (plotters keeps a &'static reference).
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, bytes);
                return Ok(cand.to_string());
            }
        }
        Err(format!(
            "no usable TrueType font for the report's plots (tried {}); install Debian's fonts-dejavu-core \
             (scripts/bootstrap.sh does) or point MER_FONT at a .ttf file",
            tried.join(", ")
        ))
    })
    .clone()
    .map_err(CoordError::Runtime)
}

fn draw_err<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> CoordError + '_ {
    move |e| CoordError::Runtime(format!("plot {what}: {e:?}"))
}

/// Encodes an RGB8 buffer as PNG bytes.
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, CoordError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| CoordError::Runtime(format!("PNG encoding: {e}")))?;
        wr.write_image_data(rgb)
            .map_err(|e| CoordError::Runtime(format!("PNG encoding: {e}")))?;
    }
    Ok(out)
}

/// Renders with `draw` onto a `w` x `h` white canvas and returns the PNG bytes.
fn render<F>(what: &str, w: u32, h: u32, draw: F) -> Result<Vec<u8>, CoordError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), CoordError>,
{
    ensure_font()?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err(what))?;
        draw(&root)?;
        root.present().map_err(draw_err(what))?;
    }
    encode_png(&buf, w, h)
}

/// A confusion matrix `rows[true][pred]` as a heat map with the counts and row-normalised recall in each
/// cell.
pub fn confusion_png(
    title: &str,
    classes: &[String],
    rows: &[Vec<u64>],
) -> Result<Vec<u8>, CoordError> {
    let k = rows.len();
    let cell = 110u32;
    let (left, top, bottom) = (120u32, 50u32, 70u32);
    let w = left + cell * k.max(1) as u32 + 30;
    let h = top + cell * k.max(1) as u32 + bottom;
    render(title, w, h, |root| {
        let e = draw_err(title);
        root.draw(&Text::new(
            title.to_string(),
            (10, 12),
            (FAMILY, 20).into_font(),
        ))
        .map_err(&e)?;
        for (t, row) in rows.iter().enumerate() {
            let support: u64 = row.iter().sum();
            for (p, &c) in row.iter().enumerate() {
                let frac = if support == 0 {
                    0.0
                } else {
                    c as f64 / support as f64
                };
                let x0 = (left + cell * p as u32) as i32;
                let y0 = (top + cell * t as u32) as i32;
                let shade = (255.0 - 200.0 * frac) as u8;
                let color = RGBColor(shade, shade, 255);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    color.filled(),
                ))
                .map_err(&e)?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    BLACK.stroke_width(1),
                ))
                .map_err(&e)?;
                let fg = if frac > 0.6 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    format!("{c}"),
                    (x0 + 12, y0 + 30),
                    (FAMILY, 26).into_font().color(&fg),
                ))
                .map_err(&e)?;
                root.draw(&Text::new(
                    format!("{:.0}%", frac * 100.0),
                    (x0 + 12, y0 + 70),
                    (FAMILY, 16).into_font().color(&fg),
                ))
                .map_err(&e)?;
            }
            let name = classes.get(t).cloned().unwrap_or_else(|| t.to_string());
            root.draw(&Text::new(
                name,
                (8, (top + cell * t as u32 + cell / 2 - 8) as i32),
                (FAMILY, 16).into_font(),
            ))
            .map_err(&e)?;
        }
        for p in 0..k {
            let name = classes.get(p).cloned().unwrap_or_else(|| p.to_string());
            root.draw(&Text::new(
                name,
                (
                    (left + cell * p as u32 + 8) as i32,
                    (top + cell * k as u32 + 8) as i32,
                ),
                (FAMILY, 16).into_font(),
            ))
            .map_err(&e)?;
        }
        root.draw(&Text::new(
            "rows: true class, columns: predicted".to_string(),
            (left as i32, (h - 28) as i32),
            (FAMILY, 14).into_font(),
        ))
        .map_err(&e)?;
        Ok(())
    })
}

/// One line of a line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// A line plot with markers and a legend. The y range is `y_range` when given, else the data's.
pub fn line_png(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<Vec<u8>, CoordError> {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (mut y0, mut y1) = match y_range {
        Some(r) => r,
        None => pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        }),
    };
    if !x0.is_finite() || !x1.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() || !y1.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    if y1 - y0 < 1e-9 {
        (y0, y1) = (y0 - 0.05, y1 + 0.05);
    } else if y_range.is_none() {
        let pad = (y1 - y0) * 0.08;
        (y0, y1) = (y0 - pad, y1 + pad);
    }
    render(title, 760, 440, |root| {
        let e = draw_err(title);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(&e)?;
        for (i, s) in series.iter().enumerate() {
            let c = palette(i);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                .map_err(&e)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(&e)?;
        }
        if series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(&e)?;
        }
        Ok(())
    })
}

/// A grouped bar chart: one group per entry of `groups` (e.g. dataset parts), one bar per series in each
/// group (e.g. methods), values in `[0, 1]`, with a legend.
pub fn bars_png(
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<Vec<u8>, CoordError> {
    let g = groups.len().max(1) as f64;
    let k = series.len().max(1) as f64;
    render(title, 760, 440, |root| {
        let e = draw_err(title);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            // Headroom above 1 keeps the legend clear of the bars.
            .build_cartesian_2d(0.0..g, 0.0..1.4)
            .map_err(&e)?;
        let names = groups.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len().max(1) * 2 + 1)
            .x_label_formatter(&|x: &f64| {
                // Labels sit at the group centres (i + 0.5).
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .y_label_formatter(&|y: &f64| {
                if *y <= 1.0 + 1e-9 {
                    format!("{y:.1}")
                } else {
                    String::new()
                }
            })
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(&e)?;
        let width = 0.8 / k;
        for (j, (label, values)) in series.iter().enumerate() {
            let c = palette(j);
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    let x0 = i as f64 + 0.1 + j as f64 * width;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + width * 0.92, v.clamp(0.0, 1.0))],
                        c.filled(),
                    )
                }))
                .map_err(&e)?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(&e)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::decode_png as decode;

    #[test]
    fn plots_decode_and_carry_ink() {
        let classes = vec!["negative".to_string(), "positive".into(), "surprise".into()];
        let png = confusion_png(
            "cm",
            &classes,
            &[vec![5, 1, 0], vec![0, 3, 2], vec![1, 0, 4]],
        )
        .unwrap();
        let (w, h) = decode(&png);
        assert!(w > 300 && h > 300);
        let s = vec![Series {
            label: "a".into(),
            points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)],
        }];
        let png = line_png("loss", "epoch", "loss", &s, None).unwrap();
        assert_eq!(decode(&png), (760, 440));
        // Not a blank canvas: the PNG of a plot is larger than that of an empty white image.
        let blank = encode_png(&vec![255u8; 760 * 440 * 3], 760, 440).unwrap();
        assert!(
            png.len() > blank.len() * 2,
            "{} vs {}",
            png.len(),
            blank.len()
        );
        // Degenerate input still renders.
        line_png(
            "one",
            "x",
            "y",
            &[Series {
                label: String::new(),
                points: vec![(1.0, 1.0)],
            }],
            Some((0.0, 1.0)),
        )
        .unwrap();
    }
}
