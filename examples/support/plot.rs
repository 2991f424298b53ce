//! Loss curves as SVG charts (`plotters`, no font libraries).

use std::error::Error;
use std::ops::Range;
use std::path::Path;

/// [`plot_losses`] at the end of a run: creates `path`'s folder when it is
/// missing, and reports a failure as a warning rather than failing a run
/// whose training has finished (its results are already printed). Returns
/// whether the chart was written, and says where.
pub fn write_plot(path: &Path, title: &str, series: &[(&str, &[(f64, f64)])], y_log: bool) -> bool {
    let folder: Result<(), Box<dyn Error>> = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()).into()),
        _ => Ok(()),
    };
    let written = folder.and_then(|()| plot_losses(path, title, series, y_log));
    match written {
        Ok(()) => {
            println!("loss curve: {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("warning: the loss curve was not written ({e})");
            false
        }
    }
}

/// Writes an SVG line chart of one or more loss curves to `path`.
///
/// `series` holds `(name, points)` pairs, each point `(step, loss)`; every
/// series becomes one coloured line with an entry in the legend (with a dot
/// at each point when it has at most 60 points). The x axis
/// is labelled "step", the y axis "loss"; with `y_log` it is logarithmic
/// (ticks at 1-2-5 × 10^k) and points with a loss `<= 0` are left out.
/// Non-finite points are always left out; it is an error if no point is left.
/// `title` is drawn above the chart.
///
/// Text is written as SVG `<text>` elements and laid out by whatever displays
/// the SVG (browser, `rsvg-convert`, ...), so no font library is needed here:
/// `plotters` is built without its `ttf`/`ab_glyph` features and uses its
/// built-in size estimate for layout.
pub fn plot_losses(
    path: &Path,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    y_log: bool,
) -> Result<(), Box<dyn Error>> {
    use plotters::prelude::*;

    // A log axis is drawn as a linear axis over log10(loss) with ticks at
    // 1-2-5 × 10^k (plotters' own log scale places its ticks poorly).
    let to_y = |y: f64| if y_log { y.log10() } else { y };
    let clean: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let pts = pts
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!y_log || *y > 0.0))
                .map(|&(x, y)| (x, to_y(y)))
                .collect();
            (*name, pts)
        })
        .collect();
    let all = || clean.iter().flat_map(|(_, pts)| pts.iter().copied());
    if all().next().is_none() {
        return Err(format!("plot_losses({}): no finite points to plot", path.display()).into());
    }
    let span = |f: fn((f64, f64)) -> f64| {
        all()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (mut x0, mut x1) = span(|p| p.0);
    let (mut y0, mut y1) = span(|p| p.1);
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = if y1 > y0 {
        0.05 * (y1 - y0)
    } else if y_log {
        0.1
    } else {
        0.5 * y0.abs().max(1e-3)
    };
    y0 -= pad;
    y1 += pad;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72);
    let y_ticks = if y_log {
        log_ticks(y0, y1)
    } else {
        linear_ticks(y0, y1)
    };
    let y_axis = TickedAxis {
        range: y0..y1,
        ticks: y_ticks,
    };
    let mut chart = builder.build_cartesian_2d(x0..x1, y_axis)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(if y_log { "loss (log scale)" } else { "loss" })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .x_label_formatter(&|x| axis_number(*x))
        .y_label_formatter(&|y| axis_number(if y_log { 10f64.powf(*y) } else { *y }))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(WHITE)
        .draw()?;
    for (i, (name, pts)) in clean.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(
                // Sparse curves (e.g. a validation loss every N steps) get dots.
                LineSeries::new(pts.iter().copied(), color.filled().stroke_width(2))
                    .point_size(if pts.len() <= 60 { 3 } else { 0 }),
            )?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A linear `f64` axis with the given tick positions (and no light lines).
struct TickedAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// About 5-10 "nice" tick values (1-2-5 steps) within `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 10.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Tick positions, in log10 units within `[lo, hi]`, at 1-2-5 × 10^k (or at
/// 1..9 × 10^k when that gives fewer than 4 ticks, or at 10^k only when the
/// range spans many decades).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (lo.floor() as i32)..=(hi.ceil() as i32);
    let at = |mantissas: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|k| mantissas.iter().map(move |m| (m * 10f64.powi(k)).log10()))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    if hi - lo > 6.0 {
        return at(&[1.0]);
    }
    let ticks = at(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 {
        ticks
    } else {
        at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// A tick label: at most 4 significant digits, no trailing zeros, scientific
/// notation for very large or small magnitudes.
fn axis_number(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        return format!(
            "{}e{exponent}",
            mantissa.trim_end_matches('0').trim_end_matches('.')
        );
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
