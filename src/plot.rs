//! Charts as SVG strings, drawn with plotters' SVG backend (`SVGBackend::with_string`): no
//! files, no fonts (text is measured by an estimate, and the viewer picks a sans-serif font).
//!
//! A [`Chart`] draws [`Series`] (points, a line or steps) against two [`Axis`] (linear or log),
//! with shaded x ranges ([`Band`]) and labelled points ([`Annotation`]); [`Bars`] draws one
//! labelled horizontal bar per row. Both return the SVG document as a string, and never
//! panic: non-finite points are skipped, and what cannot be drawn (a non-positive value on a
//! log axis, an empty or reversed range, a canvas too small) is an [`Error::Plot`] that names
//! it. Text is escaped, so labels may hold `<` or `&`.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::{Error, Result};

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Evenly spaced powers of ten; every value on the axis must be positive.
    Log,
}

/// One axis: its label (with units), its scale and its range.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The axis's title, with its units (`"width (channels)"`).
    pub label: String,
    /// Linear or logarithmic.
    pub scale: Scale,
    /// The range shown, `(low, high)`; `None`: the data's, padded.
    pub range: Option<(f64, f64)>,
}

impl Axis {
    /// A linear axis, its range from the data.
    pub fn linear(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
        }
    }

    /// A logarithmic axis, its range from the data.
    pub fn log(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            range: None,
        }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A dot per point.
    Points,
    /// Straight segments from point to point, in the given order.
    Line,
    /// A staircase, as an empirical CDF: from each point (in x order) horizontally to the next
    /// point's x, then vertically to its y.
    Steps,
}

/// A labelled set of points drawn one way.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend entry.
    pub label: String,
    /// `(x, y)`; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub mark: Mark,
}

impl Series {
    /// A series drawn as dots.
    pub fn points(label: impl Into<String>, pts: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points: pts.into_iter().collect(),
            mark: Mark::Points,
        }
    }

    /// A series drawn as a line through its points, in order.
    pub fn line(label: impl Into<String>, pts: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points: pts.into_iter().collect(),
            mark: Mark::Line,
        }
    }

    /// A series drawn as steps (see [`Mark::Steps`]).
    pub fn steps(label: impl Into<String>, pts: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points: pts.into_iter().collect(),
            mark: Mark::Steps,
        }
    }
}

/// A marked point with its label beside it (a named model among measurements, say).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The text beside the marker.
    pub label: String,
    /// Where, on the x axis.
    pub x: f64,
    /// Where, on the y axis.
    pub y: f64,
}

/// A shaded x range, labelled with one or more lines (the first in bold).
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Where it starts, on the x axis.
    pub x0: f64,
    /// Where it ends.
    pub x1: f64,
    /// Its label, a line each.
    pub lines: Vec<String>,
}

/// An x-y chart: series, annotations and bands against two axes, with a title and a legend.
///
/// ```
/// use regnet_wgpu::plot::{Axis, Band, Chart, Series};
///
/// let mut chart = Chart::new("widths", Axis::linear("block"), Axis::log("width (channels)"));
/// chart.series.push(Series::line("u_j", (0..8).map(|j| (j as f64, 24.0 + 36.0 * j as f64))));
/// chart.bands.push(Band { x0: -0.5, x1: 3.5, lines: vec!["stage 1".into(), "d=4".into()] });
/// let svg = chart.to_svg()?;
/// assert!(svg.starts_with("<svg") && svg.contains("stage 1"));
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Drawn at the top.
    pub title: String,
    /// A smaller line below the title.
    pub subtitle: Option<String>,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// Drawn in order, each in its own colour, each with a legend entry.
    pub series: Vec<Series>,
    /// Marked points, labelled beside their marker.
    pub annotations: Vec<Annotation>,
    /// Shaded x ranges, under everything else.
    pub bands: Vec<Band>,
    /// Width and height in pixels (880 by 540 from [`Chart::new`]).
    pub size: (u32, u32),
}

/// Horizontal bars, one per row, labelled on the left, each with its value at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Drawn at the top.
    pub title: String,
    /// The value axis's title, with its units (`"time (ms)"`).
    pub value_label: String,
    /// `(label, value)`, drawn top to bottom; a non-finite value draws no bar.
    pub bars: Vec<(String, f64)>,
}

// ---------------------------------------------------------------------------------------------
// Style and layout
// ---------------------------------------------------------------------------------------------

/// The series' colours, in order (then again).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1c, 0x5f, 0xa8),
    RGBColor(0xd9, 0x48, 0x0f),
    RGBColor(0x2b, 0x8a, 0x3e),
    RGBColor(0x86, 0x3b, 0xbf),
    RGBColor(0xc2, 0x25, 0x7d),
    RGBColor(0x0b, 0x72, 0x85),
    RGBColor(0xe6, 0x77, 0x00),
    RGBColor(0x49, 0x50, 0x57),
];
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);
const LABEL_INK: RGBColor = RGBColor(0x3b, 0x46, 0x52);
const MAJOR_GRID: RGBColor = RGBColor(0xc3, 0xca, 0xd3);
const MINOR_GRID: RGBColor = RGBColor(0xe4, 0xe8, 0xed);
const BAND_FILLS: [RGBColor; 2] = [RGBColor(0xea, 0xf0, 0xf8), RGBColor(0xf6, 0xf7, 0xf9)];
const BAND_EDGE: RGBColor = RGBColor(0x9a, 0xa5, 0xb1);
const ANNOTATION: RGBColor = RGBColor(0xc9, 0x2a, 0x2a);
const BAR: RGBColor = RGBColor(0x4a, 0x7a, 0xb5);

/// The smallest canvas laid out.
const MIN_SIZE: (u32, u32) = (240, 180);
/// Font sizes in pixels.
const TITLE_PX: f64 = 18.0;
const SUBTITLE_PX: f64 = 13.0;
const TEXT_PX: f64 = 12.0;
const BAND_PX: f64 = 11.0;

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// A text style of `px` pixels (plotters writes `font-size` as the size / 1.24).
fn text(px: f64, color: &'static RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    FontDesc::new(FontFamily::SansSerif, px * 1.24, FontStyle::Normal)
        .color(color)
        .pos(Pos::new(h, v))
}

fn bold(px: f64, color: &'static RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    FontDesc::new(FontFamily::SansSerif, px * 1.24, FontStyle::Bold)
        .color(color)
        .pos(Pos::new(h, v))
}

/// Roughly how wide `s` is at `px` pixels, in pixels.
fn text_width(s: &str, px: f64) -> f64 {
    s.chars().count() as f64 * px * 0.6
}

/// A number as a tick or value label: at most `sig` significant digits, no trailing zeros.
fn fmt_num(v: f64, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            v.to_string()
        };
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-4..15).contains(&mag) {
        return format!("{v:.prec$e}", prec = (sig - 1).max(0) as usize);
    }
    let decimals = (sig - 1 - mag).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// Draws onto a fresh SVG canvas of `size` and returns the document.
fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    if size.0 < MIN_SIZE.0 || size.1 < MIN_SIZE.1 {
        return Err(Error::Plot(format!(
            "a chart of {}x{} pixels is too small to lay out (at least {}x{})",
            size.0, size.1, MIN_SIZE.0, MIN_SIZE.1
        )));
    }
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Axes: ranges and ticks
// ---------------------------------------------------------------------------------------------

impl Axis {
    /// A value in drawing space: itself, or its log10.
    fn to_draw(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }

    /// Refuses a value a log axis cannot show.
    fn check(&self, which: &str, v: f64, what: &dyn Fn() -> String) -> Result<()> {
        if self.scale == Scale::Log && v <= 0.0 {
            return Err(Error::Plot(format!(
                "the {which} axis `{}` is logarithmic, but {} has the value {v}: a log axis needs values above 0",
                self.label,
                what()
            )));
        }
        Ok(())
    }

    /// The range in drawing space: the one given (checked), or the data's (`data`, in
    /// drawing space) padded by `pad` of its span below and above.
    fn draw_range(&self, which: &str, data: &[f64], pad: (f64, f64)) -> Result<(f64, f64)> {
        if let Some((lo, hi)) = self.range {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(Error::Plot(format!(
                    "the {which} axis `{}` has the range ({lo}, {hi}): it needs two finite values, the first below the second",
                    self.label
                )));
            }
            self.check(which, lo, &|| "its range".into())?;
            return Ok((self.to_draw(lo), self.to_draw(hi)));
        }
        let (lo, hi) = data
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi {
            // No data: a unit range (1 to 10 on a log axis).
            return Ok((0.0, 1.0));
        }
        let span = hi - lo;
        let span = if span > 0.0 {
            span
        } else if self.scale == Scale::Log {
            1.0
        } else {
            lo.abs().max(1.0)
        };
        let mut lo_p = lo - pad.0 * span;
        let hi_p = hi + pad.1 * span;
        // A linear axis of positive data starts at 0 when 0 is near.
        if self.scale == Scale::Linear && lo >= 0.0 && lo_p < 0.0 {
            lo_p = 0.0;
        }
        if lo_p >= hi_p {
            return Ok((lo - 0.5, lo + 0.5));
        }
        Ok((lo_p, hi_p))
    }

    /// Major and minor ticks within `(lo, hi)` (drawing space), as values in drawing space,
    /// with their labels.
    fn ticks(&self, (lo, hi): (f64, f64), target: f64) -> (Vec<(f64, String)>, Vec<f64>) {
        let (major, minor) = match self.scale {
            Scale::Linear => linear_ticks(lo, hi, target),
            Scale::Log => {
                let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
                let (major, minor) = log_ticks(a, b);
                if major.len() >= 2 {
                    (major, minor)
                } else {
                    linear_ticks(a, b, target)
                }
            }
        };
        let labelled = major
            .iter()
            .map(|&v| (self.to_draw(v), fmt_num(v, 6)))
            .collect();
        (labelled, minor.iter().map(|&v| self.to_draw(v)).collect())
    }
}

/// Ticks every 1, 2 or 5 times a power of ten, about `target` of them; minor ones halfway.
fn linear_ticks(lo: f64, hi: f64, target: f64) -> (Vec<f64>, Vec<f64>) {
    let raw = ((hi - lo) / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let (first, last) = ((lo / step).ceil(), (hi / step).floor());
    if !(first.is_finite() && last.is_finite()) || last - first > 1000.0 {
        return (Vec::new(), Vec::new());
    }
    let major: Vec<f64> = (first as i64..=last as i64)
        .map(|k| k as f64 * step)
        .collect();
    let minor = (first as i64 - 1..=last as i64)
        .map(|k| (k as f64 + 0.5) * step)
        .filter(|&t| t >= lo && t <= hi)
        .collect();
    (major, minor)
}

/// Log ticks at nice values (powers of ten; 1-2-5 and denser when the range is narrow), at
/// least 4 where they fit: (major, minor).
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    if !(lo > 0.0 && hi.is_finite()) || k1 - k0 > 300 {
        return (Vec::new(), Vec::new());
    }
    // Every power of ten when there are many of them.
    let every = ((k1 - k0) / 10).max(1);
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let mut v = Vec::new();
        for k in (k0..=k1).filter(|k| (k - k0) % every == 0 || mantissas.len() > 1) {
            for &m in mantissas {
                let t = m * 10f64.powi(k);
                if t >= lo * 0.9999 && t <= hi * 1.0001 {
                    v.push(t);
                }
            }
        }
        v
    };
    let sets: [&[f64]; 4] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 5.0, 7.0],
        &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    let major = sets
        .iter()
        .map(|set| within(set))
        .find(|t| t.len() >= 4)
        .unwrap_or_else(|| within(sets[3]));
    let minor = if k1 - k0 > 12 {
        Vec::new()
    } else {
        within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            .into_iter()
            .filter(|t| !major.iter().any(|m| (m / t - 1.0).abs() < 1e-9))
            .collect()
    };
    (major, minor)
}

// ---------------------------------------------------------------------------------------------
// Chart
// ---------------------------------------------------------------------------------------------

/// What a [`Chart`] draws, in drawing space: each series' points, the annotations
/// `(x, y, label)` and the bands `(x0, x1, label lines)`.
struct Drawn<'a> {
    series: Vec<Vec<(f64, f64)>>,
    notes: Vec<(f64, f64, &'a str)>,
    bands: Vec<(f64, f64, &'a Vec<String>)>,
}

impl Chart {
    /// An empty chart of 880 by 540 pixels.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Chart {
            title: title.into(),
            subtitle: None,
            x,
            y,
            series: Vec::new(),
            annotations: Vec::new(),
            bands: Vec::new(),
            size: (880, 540),
        }
    }

    /// The chart as an SVG document.
    ///
    /// Errors ([`Error::Plot`]): a value at or below 0 on a log axis (naming the axis and the
    /// series), an axis range that is not finite and increasing, a canvas under 240x180.
    pub fn to_svg(&self) -> Result<String> {
        let Drawn {
            series,
            notes,
            bands,
        } = self.in_draw_space()?;
        let xs: Vec<f64> = series
            .iter()
            .flatten()
            .map(|p| p.0)
            .chain(notes.iter().map(|n| n.0))
            .chain(bands.iter().flat_map(|b| [b.0, b.1]))
            .collect();
        let ys: Vec<f64> = series
            .iter()
            .flatten()
            .map(|p| p.1)
            .chain(notes.iter().map(|n| n.1))
            .collect();
        let x_pad = if bands.is_empty() { 0.03 } else { 0.0 };
        let x_range = self.x.draw_range("x", &xs, (x_pad, x_pad))?;
        // Room above the data for the bands' labels.
        let top_pad = if bands.is_empty() { 0.06 } else { 0.22 };
        let y_range = self.y.draw_range("y", &ys, (0.06, top_pad))?;

        render(self.size, |root| {
            let layout = self.draw_frame(root, y_range)?;
            let chart = layout.chart(root, x_range, y_range)?;
            let area = chart.plotting_area();
            let (ylo, yhi) = y_range;
            for (i, &(x0, x1, _)) in bands.iter().enumerate() {
                let (x0, x1) = (x0.max(x_range.0), x1.min(x_range.1));
                if x0 < x1 {
                    let fill = BAND_FILLS[i % 2].filled();
                    area.draw(&Rectangle::new([(x0, ylo), (x1, yhi)], fill))
                        .map_err(plot_error)?;
                }
            }
            self.draw_grid(root, &chart, &layout, x_range, y_range)?;
            for &(x0, _, _) in bands.iter().skip(1) {
                if x0 > x_range.0 && x0 < x_range.1 {
                    area.draw(&PathElement::new(vec![(x0, ylo), (x0, yhi)], BAND_EDGE))
                        .map_err(plot_error)?;
                }
            }
            for (i, (s, pts)) in self.series.iter().zip(&series).enumerate() {
                draw_series(
                    &chart,
                    s.mark,
                    pts,
                    PALETTE[i % PALETTE.len()],
                    x_range,
                    y_range,
                )?;
            }
            for &(x, y, label) in &notes {
                if x < x_range.0 || x > x_range.1 || y < ylo || y > yhi {
                    continue;
                }
                let (px, py) = chart.backend_coord(&(x, y));
                root.draw(&TriangleMarker::new((px, py), 6, ANNOTATION.filled()))
                    .map_err(plot_error)?;
                let w = text_width(label, TEXT_PX);
                let (tx, h) = if px as f64 + 9.0 + w <= layout.right as f64 {
                    (px + 9, HPos::Left)
                } else {
                    (px - 9, HPos::Right)
                };
                let style = text(TEXT_PX, &INK, h, VPos::Center);
                root.draw(&Text::new(label.to_string(), (tx, py), style))
                    .map_err(plot_error)?;
            }
            for &(x0, x1, lines) in &bands {
                let (x0, x1) = (x0.max(x_range.0), x1.min(x_range.1));
                if x0 < x1 {
                    draw_band_label(root, &chart, &layout, (x0, x1), lines, &series, y_range)?;
                }
            }
            Ok(())
        })
    }

    /// The series' finite points, the annotations and the bands in drawing space (log axes
    /// as log10), each value checked against its axis.
    fn in_draw_space(&self) -> Result<Drawn<'_>> {
        // The series' finite points in drawing space, each checked against its axes.
        let mut series = Vec::with_capacity(self.series.len());
        for s in &self.series {
            let what = || format!("series `{}`", s.label);
            let mut pts = Vec::with_capacity(s.points.len());
            for &(x, y) in s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
            {
                self.x.check("x", x, &what)?;
                self.y.check("y", y, &what)?;
                pts.push((self.x.to_draw(x), self.y.to_draw(y)));
            }
            if s.mark == Mark::Steps {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            series.push(pts);
        }
        let mut notes = Vec::new();
        for a in &self.annotations {
            if !(a.x.is_finite() && a.y.is_finite()) {
                continue;
            }
            let what = || format!("annotation `{}`", a.label);
            self.x.check("x", a.x, &what)?;
            self.y.check("y", a.y, &what)?;
            notes.push((self.x.to_draw(a.x), self.y.to_draw(a.y), a.label.as_str()));
        }
        let mut bands = Vec::new();
        for b in &self.bands {
            if !(b.x0.is_finite() && b.x1.is_finite()) {
                continue;
            }
            let what = || format!("band `{}`", b.lines.first().map_or("", String::as_str));
            self.x.check("x", b.x0, &what)?;
            self.x.check("x", b.x1, &what)?;
            let (x0, x1) = (self.x.to_draw(b.x0), self.x.to_draw(b.x1));
            bands.push((x0.min(x1), x0.max(x1), &b.lines));
        }

        Ok(Drawn {
            series,
            notes,
            bands,
        })
    }

    /// The title, subtitle, legend and axis titles; returns where the plot goes.
    fn draw_frame(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
        y_range: (f64, f64),
    ) -> Result<Layout> {
        let (w, h) = (self.size.0 as i32, self.size.1 as i32);
        let draw = |t: &str, at: (i32, i32), style: TextStyle<'static>| {
            root.draw(&Text::new(t.to_string(), at, style))
                .map_err(plot_error)
        };
        let fit = |s: &str, px: f64| (px * (w as f64 - 24.0) / text_width(s, px)).min(px);
        let mut y = 10;
        draw(
            &self.title,
            (w / 2, y),
            bold(fit(&self.title, TITLE_PX), &INK, HPos::Center, VPos::Top),
        )?;
        y += 28;
        if let Some(sub) = &self.subtitle {
            let px = fit(sub, SUBTITLE_PX);
            draw(sub, (w / 2, y), text(px, &MUTED, HPos::Center, VPos::Top))?;
            y += 22;
        }

        // The legend: rows of (swatch, label), wrapped to the width.
        let left_edge = 16;
        let (mut x, mut row_y) = (left_edge, y + 8);
        let mut rows = 0;
        for (i, s) in self.series.iter().enumerate() {
            let entry = 30 + text_width(&s.label, TEXT_PX) as i32 + 22;
            if x > left_edge && x + entry > w - 8 {
                x = left_edge;
                row_y += 20;
            }
            rows = rows.max(1);
            draw_swatch(root, s.mark, PALETTE[i % PALETTE.len()], (x, row_y))?;
            draw(
                &s.label,
                (x + 30, row_y),
                text(TEXT_PX, &INK, HPos::Left, VPos::Center),
            )?;
            x += entry;
        }
        let top = if rows > 0 { row_y + 18 } else { y + 6 };

        // The y ticks' labels set the left margin.
        let (y_ticks, _) = self.y.ticks(y_range, 6.0);
        let widest = y_ticks
            .iter()
            .map(|(_, l)| text_width(l, TEXT_PX))
            .fold(0.0, f64::max);
        let left = (widest as i32 + 44).clamp(64, w / 3);
        let (right, bottom) = (w - 24, h - 56);
        if bottom - top < 40 || right - left < 40 {
            return Err(Error::Plot(format!(
                "a chart of {w}x{h} pixels has no room left for its plot under its title and legend"
            )));
        }
        draw(
            &self.x.label,
            ((left + right) / 2, bottom + 30),
            text(13.0, &INK, HPos::Center, VPos::Top),
        )?;
        let cy = (top + bottom) / 2;
        draw(
            &self.y.label,
            (16, cy),
            text(13.0, &INK, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
        )?;
        Ok(Layout {
            left,
            top,
            right,
            bottom,
            size: (w, h),
        })
    }

    /// Grid lines, the frame, ticks and their labels.
    fn draw_grid(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
        chart: &Plot,
        layout: &Layout,
        x_range: (f64, f64),
        y_range: (f64, f64),
    ) -> Result<()> {
        let area = chart.plotting_area();
        let (x_ticks, x_minor) = self.x.ticks(x_range, 8.0);
        let (y_ticks, y_minor) = self.y.ticks(y_range, 6.0);
        let inside = |v: f64, (lo, hi): (f64, f64)| v >= lo - 1e-9 && v <= hi + 1e-9;
        for (v, color) in y_minor
            .iter()
            .map(|&v| (v, MINOR_GRID))
            .chain(y_ticks.iter().map(|t| (t.0, MAJOR_GRID)))
            .filter(|(v, _)| inside(*v, y_range))
        {
            let line = vec![(x_range.0, v), (x_range.1, v)];
            area.draw(&PathElement::new(line, color))
                .map_err(plot_error)?;
        }
        for (v, color) in x_minor
            .iter()
            .map(|&v| (v, MINOR_GRID))
            .chain(x_ticks.iter().map(|t| (t.0, MAJOR_GRID)))
            .filter(|(v, _)| inside(*v, x_range))
        {
            let line = vec![(v, y_range.0), (v, y_range.1)];
            area.draw(&PathElement::new(line, color))
                .map_err(plot_error)?;
        }
        let frame = [(layout.left, layout.top), (layout.right, layout.bottom)];
        root.draw(&Rectangle::new(frame, INK.stroke_width(1)))
            .map_err(plot_error)?;
        for (v, label) in y_ticks.iter().filter(|t| inside(t.0, y_range)) {
            let (_, py) = chart.backend_coord(&(x_range.0, *v));
            let tick = vec![(layout.left - 5, py), (layout.left, py)];
            root.draw(&PathElement::new(tick, INK))
                .map_err(plot_error)?;
            let style = text(TEXT_PX, &INK, HPos::Right, VPos::Center);
            root.draw(&Text::new(label.clone(), (layout.left - 8, py), style))
                .map_err(plot_error)?;
        }
        for (v, label) in x_ticks.iter().filter(|t| inside(t.0, x_range)) {
            let (px, _) = chart.backend_coord(&(*v, y_range.0));
            let tick = vec![(px, layout.bottom), (px, layout.bottom + 5)];
            root.draw(&PathElement::new(tick, INK))
                .map_err(plot_error)?;
            let style = text(TEXT_PX, &INK, HPos::Center, VPos::Top);
            root.draw(&Text::new(label.clone(), (px, layout.bottom + 8), style))
                .map_err(plot_error)?;
        }
        Ok(())
    }
}

/// The chart's coordinates: both axes in drawing space (log10 for log axes).
type Plot<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Where the plot is on the canvas, in pixels.
struct Layout {
    left: i32,
    top: i32,
    right: i32,
    bottom: i32,
    size: (i32, i32),
}

impl Layout {
    fn chart<'a>(
        &self,
        root: &DrawingArea<SVGBackend<'a>, Shift>,
        (x0, x1): (f64, f64),
        (y0, y1): (f64, f64),
    ) -> Result<Plot<'a>> {
        ChartBuilder::on(root)
            .margin_left(self.left)
            .margin_top(self.top)
            .margin_right(self.size.0 - self.right)
            .margin_bottom(self.size.1 - self.bottom)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)
    }
}

/// A legend entry's swatch, 24 pixels wide from `x`, centred on `y`.
fn draw_swatch(
    root: &DrawingArea<SVGBackend, Shift>,
    mark: Mark,
    color: RGBColor,
    (x, y): (i32, i32),
) -> Result<()> {
    match mark {
        Mark::Points => root.draw(&Circle::new((x + 12, y), 3, color.filled())),
        Mark::Line => root.draw(&PathElement::new(
            vec![(x, y), (x + 24, y)],
            color.stroke_width(2),
        )),
        Mark::Steps => root.draw(&PathElement::new(
            vec![
                (x, y + 4),
                (x + 12, y + 4),
                (x + 12, y - 4),
                (x + 24, y - 4),
            ],
            color.stroke_width(2),
        )),
    }
    .map_err(plot_error)
}

fn draw_series(
    chart: &Plot,
    mark: Mark,
    pts: &[(f64, f64)],
    color: RGBColor,
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Result<()> {
    let area = chart.plotting_area();
    match mark {
        Mark::Points => {
            for &(x, y) in pts.iter().filter(|(x, y)| {
                *x >= x_range.0 && *x <= x_range.1 && *y >= y_range.0 && *y <= y_range.1
            }) {
                area.draw(&Circle::new((x, y), 3, color.filled()))
                    .map_err(plot_error)?;
            }
        }
        Mark::Line => {
            if pts.len() >= 2 {
                let line = PathElement::new(pts.to_vec(), color.stroke_width(2));
                area.draw(&line).map_err(plot_error)?;
            }
        }
        Mark::Steps => {
            let mut path = Vec::with_capacity(pts.len() * 2);
            for (i, &(x, y)) in pts.iter().enumerate() {
                path.push((x, y));
                if let Some(&(next, _)) = pts.get(i + 1) {
                    path.push((next, y));
                }
            }
            if path.len() >= 2 {
                area.draw(&PathElement::new(path, color.stroke_width(2)))
                    .map_err(plot_error)?;
            }
        }
    }
    Ok(())
}

/// A band's label lines at the top or the bottom of its band, whichever the data leaves
/// freer; rotated into one line when the band is too narrow.
fn draw_band_label(
    root: &DrawingArea<SVGBackend, Shift>,
    chart: &Plot,
    layout: &Layout,
    (x0, x1): (f64, f64),
    lines: &[String],
    series: &[Vec<(f64, f64)>],
    (ylo, yhi): (f64, f64),
) -> Result<()> {
    let Some(first) = lines.first() else {
        return Ok(());
    };
    let frac = |y: f64| (y - ylo) / (yhi - ylo);
    let within: Vec<f64> = series
        .iter()
        .flatten()
        .filter(|p| p.0 >= x0 && p.0 <= x1)
        .map(|p| frac(p.1).clamp(0.0, 1.0))
        .collect();
    let top_room = 1.0 - within.iter().copied().fold(0.0, f64::max);
    let bottom_room = within.iter().copied().fold(1.0, f64::min);
    let at_top = within.is_empty() || top_room >= bottom_room;
    let (px0, _) = chart.backend_coord(&(x0, ylo));
    let (px1, _) = chart.backend_coord(&(x1, ylo));
    let cx = (px0 + px1) / 2;
    let line_h = BAND_PX as i32 + 2;
    let widest = lines
        .iter()
        .map(|l| text_width(l, BAND_PX))
        .fold(0.0, f64::max);
    if widest + 4.0 <= (px1 - px0) as f64 {
        let n = lines.len() as i32;
        let first_y = if at_top {
            layout.top + 5
        } else {
            layout.bottom - 5 - n * line_h
        };
        for (k, line) in lines.iter().enumerate() {
            let style = if k == 0 {
                bold(BAND_PX, &LABEL_INK, HPos::Center, VPos::Top)
            } else {
                text(BAND_PX, &LABEL_INK, HPos::Center, VPos::Top)
            };
            let at = (cx, first_y + k as i32 * line_h);
            root.draw(&Text::new(line.clone(), at, style))
                .map_err(plot_error)?;
        }
        return Ok(());
    }
    // Too narrow: one rotated line, as much of the label as fits.
    let room = top_room.max(bottom_room) * (layout.bottom - layout.top) as f64 - 12.0;
    let label = (1..=lines.len())
        .rev()
        .map(|k| lines[..k].join(" · "))
        .find(|t| text_width(t, BAND_PX) <= room)
        .unwrap_or_else(|| first.clone());
    let (at, h) = if at_top {
        ((cx, layout.top + 6), HPos::Right)
    } else {
        ((cx, layout.bottom - 6), HPos::Left)
    };
    let style = text(BAND_PX, &LABEL_INK, h, VPos::Center).transform(FontTransform::Rotate270);
    root.draw(&Text::new(label, at, style)).map_err(plot_error)
}

// ---------------------------------------------------------------------------------------------
// Bars
// ---------------------------------------------------------------------------------------------

impl Bars {
    /// The bars as an SVG document: 16 pixels a row, the value axis at the bottom.
    ///
    /// Never fails for any data (an empty list draws the title and the axis); the error is
    /// plotters' own, should it fail to draw.
    pub fn to_svg(&self) -> Result<String> {
        const ROW: i32 = 16;
        const PLOT_W: i32 = 600;
        let labels: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let widest = labels
            .iter()
            .map(|l| text_width(l, BAND_PX))
            .fold(0.0, f64::max);
        let left = (widest as i32 + 16).clamp(80, 560);
        let n = self.bars.len().max(1) as i32;
        let (top, bottom_margin, right_margin) = (44, 54, 150);
        let size = (
            (left + PLOT_W + right_margin) as u32,
            ((top + n * ROW + bottom_margin) as u32).max(MIN_SIZE.1),
        );
        let values: Vec<f64> = self
            .bars
            .iter()
            .map(|b| b.1)
            .filter(|v| v.is_finite())
            .collect();
        let lo = values.iter().copied().fold(0.0, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        let (lo, hi) = if hi > lo { (lo, hi) } else { (0.0, 1.0) };
        // Room inside the frame for the longest bar's value.
        let x_range = (lo, hi + 0.14 * (hi - lo));
        let y_range = (0.0, n as f64);
        let axis = Axis::linear(self.value_label.clone());

        render(size, |root| {
            let (w, h) = (size.0 as i32, size.1 as i32);
            let fit = (TITLE_PX * (w as f64 - 24.0) / text_width(&self.title, TITLE_PX))
                .min(TITLE_PX - 3.0);
            root.draw(&Text::new(
                self.title.clone(),
                (10, 12),
                bold(fit, &INK, HPos::Left, VPos::Top),
            ))
            .map_err(plot_error)?;
            let layout = Layout {
                left,
                top,
                right: left + PLOT_W,
                bottom: h - bottom_margin,
                size: (w, h),
            };
            let chart = layout.chart(root, x_range, y_range)?;
            let area = chart.plotting_area();
            let (ticks, minor) = axis.ticks(x_range, 8.0);
            for (v, color) in minor
                .iter()
                .map(|&v| (v, MINOR_GRID))
                .chain(ticks.iter().map(|t| (t.0, MAJOR_GRID)))
            {
                let line = vec![(v, y_range.0), (v, y_range.1)];
                area.draw(&PathElement::new(line, color))
                    .map_err(plot_error)?;
            }
            for (i, (label, v)) in self.bars.iter().enumerate() {
                let row = n as f64 - i as f64;
                let (_, py) = chart.backend_coord(&(x_range.0, row - 0.5));
                let style = text(BAND_PX, &INK, HPos::Right, VPos::Center);
                root.draw(&Text::new(label.clone(), (left - 6, py), style))
                    .map_err(plot_error)?;
                if !v.is_finite() {
                    continue;
                }
                let bar = [(v.min(0.0), row - 0.9), (v.max(0.0), row - 0.1)];
                area.draw(&Rectangle::new(bar, BAR.filled()))
                    .map_err(plot_error)?;
                let (px, _) = chart.backend_coord(&(v.max(0.0), row - 0.5));
                let style = text(BAND_PX, &INK, HPos::Left, VPos::Center);
                root.draw(&Text::new(fmt_num(*v, 4), (px + 4, py), style))
                    .map_err(plot_error)?;
            }
            let frame = [(layout.left, layout.top), (layout.right, layout.bottom)];
            root.draw(&Rectangle::new(frame, INK.stroke_width(1)))
                .map_err(plot_error)?;
            for (v, label) in &ticks {
                let (px, _) = chart.backend_coord(&(*v, y_range.0));
                let tick = vec![(px, layout.bottom), (px, layout.bottom + 5)];
                root.draw(&PathElement::new(tick, INK))
                    .map_err(plot_error)?;
                let style = text(TEXT_PX, &INK, HPos::Center, VPos::Top);
                root.draw(&Text::new(label.clone(), (px, layout.bottom + 8), style))
                    .map_err(plot_error)?;
            }
            let style = text(13.0, &INK, HPos::Center, VPos::Top);
            let at = ((layout.left + layout.right) / 2, layout.bottom + 28);
            root.draw(&Text::new(self.value_label.clone(), at, style))
                .map_err(plot_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}):\n{svg}"))
    }

    /// Every `<text>`'s content, unescaped.
    fn texts(svg: &str) -> Vec<String> {
        parses(svg)
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    fn sample() -> Chart {
        let mut c = Chart::new(
            "widths <&> \"q\"",
            Axis::linear("block j"),
            Axis::log("width (channels)"),
        );
        c.subtitle = Some("d = 16, w0 = 48 & more".into());
        c.series.push(Series::line(
            "u_j",
            (0..16).map(|j| (j as f64, 48.0 + 27.9 * j as f64)),
        ));
        c.series.push(Series::steps(
            "w_j",
            (0..16).map(|j| (j as f64 - 0.5, 48.0 * 1.2f64.powi(j))),
        ));
        c.series.push(Series::points(
            "se <width>",
            [(1.0, 8.0), (f64::NAN, 3.0), (2.0, f64::INFINITY)],
        ));
        c.annotations.push(Annotation {
            label: "a<b & c".into(),
            x: 3.0,
            y: 100.0,
        });
        c.bands.push(Band {
            x0: -0.5,
            x1: 0.5,
            lines: vec!["stage 1".into(), "w=48".into(), "d=1".into()],
        });
        c.bands.push(Band {
            x0: 0.5,
            x1: 15.5,
            lines: vec!["stage 2".into(), "w=104".into()],
        });
        c
    }

    #[test]
    fn chart_is_well_formed_xml_with_escaped_labels() {
        let svg = sample().to_svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        let texts = texts(&svg);
        for needle in [
            "widths <&> \"q\"",
            "se <width>",
            "a<b & c",
            "block j",
            "width (channels)",
            "u_j",
            "w_j",
        ] {
            assert!(
                texts.iter().any(|t| t == needle),
                "no text `{needle}` in {texts:?}"
            );
        }
        assert!(texts.iter().any(|t| t.contains("stage 1")), "{texts:?}");
        assert!(texts.iter().any(|t| t == "stage 2"), "{texts:?}");
        assert!(svg.contains("&lt;") && svg.contains("&amp;"));
        // Log ticks are labelled with round numbers.
        assert!(texts.iter().any(|t| t == "100"), "{texts:?}");
    }

    #[test]
    fn log_axis_with_zero_names_the_axis_and_series() {
        let mut c = Chart::new("t", Axis::linear("block"), Axis::log("width (channels)"));
        c.series
            .push(Series::points("widths", [(0.0, 4.0), (1.0, 0.0)]));
        let err = c.to_svg().unwrap_err().to_string();
        assert!(
            err.contains("width (channels)") && err.contains("widths"),
            "{err}"
        );
        assert!(matches!(c.to_svg(), Err(Error::Plot(_))));

        let mut c = Chart::new("t", Axis::log("time (ms)"), Axis::linear("count"));
        c.series.push(Series::line("runs", [(-1.0, 4.0)]));
        let err = c.to_svg().unwrap_err().to_string();
        assert!(err.contains("x axis `time (ms)`"), "{err}");

        let mut c = Chart::new("t", Axis::linear("x"), Axis::log("y"));
        c.y.range = Some((0.0, 10.0));
        assert!(c.to_svg().unwrap_err().to_string().contains("`y`"));
        c.y.range = Some((10.0, 1.0));
        assert!(c.to_svg().unwrap_err().to_string().contains("range"));
    }

    #[test]
    fn empty_charts_are_valid_svg() {
        let mut c = Chart::new("nothing", Axis::linear("x"), Axis::log("y"));
        parses(&c.to_svg().unwrap());
        c.series.push(Series::steps("empty", []));
        c.series.push(Series::line("only nan", [(f64::NAN, 1.0)]));
        c.series.push(Series::points("one", [(2.0, 5.0)]));
        parses(&c.to_svg().unwrap());
        c.size = (10, 10);
        assert!(matches!(c.to_svg(), Err(Error::Plot(_))));
    }

    #[test]
    fn linear_axis_and_many_series_cycle_the_palette() {
        let mut c = Chart::new("many", Axis::linear("x"), Axis::linear("y (ms)"));
        for k in 0..10 {
            c.series.push(Series::line(
                format!("s{k}"),
                (0..5).map(|i| (i as f64, (i * k) as f64 - 3.0)),
            ));
        }
        let svg = c.to_svg().unwrap();
        parses(&svg);
        assert!(
            svg.contains("#1C5FA8") || svg.contains("#1c5fa8"),
            "palette colour"
        );
    }

    #[test]
    fn bars_are_well_formed() {
        let b = Bars {
            title: "per-dispatch <time>".into(),
            value_label: "time (ms)".into(),
            bars: vec![
                ("s1.b1 & conv".into(), 0.5),
                ("stem".into(), 1.25),
                ("nan".into(), f64::NAN),
            ],
        };
        let svg = b.to_svg().unwrap();
        let texts = texts(&svg);
        for needle in [
            "per-dispatch <time>",
            "time (ms)",
            "s1.b1 & conv",
            "1.25",
            "nan",
        ] {
            assert!(
                texts.iter().any(|t| t == needle),
                "no text `{needle}` in {texts:?}"
            );
        }
        let empty = Bars {
            title: "none".into(),
            value_label: "ms".into(),
            bars: vec![],
        };
        parses(&empty.to_svg().unwrap());
    }

    #[test]
    fn numbers_are_formatted_shortly() {
        assert_eq!(fmt_num(100.0, 6), "100");
        assert_eq!(fmt_num(0.30000000000000004, 6), "0.3");
        assert_eq!(fmt_num(1.5, 6), "1.5");
        assert_eq!(fmt_num(-0.0, 6), "0");
        assert_eq!(fmt_num(1234.5678, 4), "1235");
        let (major, _) = log_ticks(25.0, 570.0);
        assert!(major.len() >= 4 && major.contains(&100.0), "{major:?}");
    }
}
