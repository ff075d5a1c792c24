//! Charts drawn as inline SVG (no script, no fonts, no external assets): line charts, grouped
//! bars and a scatter plot. Every data point is one element of class `mark` with a `<title>`
//! tooltip; non-finite values are dropped, and a chart left with nothing says "no data".

use super::escape::html as esc;
use std::fmt::Write;

const WIDTH: f64 = 720.0;
const PLOT_HEIGHT: f64 = 260.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 56.0;
const LEGEND_ROW: f64 = 18.0;

/// Colour-blind-safe palette (Okabe–Ito, then Tableau extras).
const PALETTE: [&str; 10] = [
    "#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000",
    "#8c564b", "#7f7f7f",
];

pub fn color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// How a line is stroked (percentiles of one series share a colour and differ by dash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

impl Stroke {
    fn dasharray(self) -> &'static str {
        match self {
            Stroke::Solid => "",
            Stroke::Dashed => " stroke-dasharray=\"6 4\"",
            Stroke::Dotted => " stroke-dasharray=\"2 3\"",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: usize,
    pub stroke: Stroke,
}

#[derive(Debug, Clone)]
pub struct LineChart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone)]
pub struct BarSeries {
    pub name: String,
    /// One value per category (`None`: not measured).
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone)]
pub struct BarChart {
    pub id: String,
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
}

#[derive(Debug, Clone)]
pub struct ScatterPoint {
    /// Short label drawn beside the point (an index into a table).
    pub label: String,
    /// Tooltip text.
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub highlight: bool,
}

#[derive(Debug, Clone)]
pub struct ScatterChart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<ScatterPoint>,
    /// What a highlighted point means (legend text).
    pub highlight_label: String,
}

/// How a point of a tune's pareto chart fared at the fidelity gate: its marker and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fidelity {
    Pass,
    Fail,
    /// Never gated (it never led the race).
    Unchecked,
}

impl Fidelity {
    pub fn parse(text: &str) -> Self {
        match text {
            "pass" => Fidelity::Pass,
            "fail" => Fidelity::Fail,
            _ => Fidelity::Unchecked,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fidelity::Pass => "pass",
            Fidelity::Fail => "fail",
            Fidelity::Unchecked => "unchecked",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Fidelity::Pass => color(2),
            Fidelity::Fail => color(3),
            Fidelity::Unchecked => color(9),
        }
    }
}

/// One configuration on a pareto chart: speed with its CI against memory.
#[derive(Debug, Clone)]
pub struct ParetoMark {
    /// Short label drawn beside the point (its row in the table).
    pub label: String,
    /// Tooltip text.
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub low: f64,
    pub high: f64,
    pub fidelity: Fidelity,
    /// On the front: faithful, and no other faithful point is at least as fast and as small.
    pub front: bool,
    pub winner: bool,
}

/// Speed × memory × fidelity: CI whiskers, a marker per fidelity outcome, the front as a line.
#[derive(Debug, Clone)]
pub struct ParetoChart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<ParetoMark>,
}

impl ParetoChart {
    fn drawn(&self) -> Vec<&ParetoMark> {
        let finite = |p: &&ParetoMark| [p.x, p.y, p.low, p.high].iter().all(|v| v.is_finite());
        self.points.iter().filter(finite).collect()
    }
}

#[derive(Debug, Clone)]
pub enum Chart {
    Line(LineChart),
    Bar(BarChart),
    Scatter(ScatterChart),
    Pareto(ParetoChart),
}

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

impl LineChart {
    fn marks(&self) -> usize {
        self.series
            .iter()
            .map(|s| s.points.iter().filter(|p| finite(p)).count())
            .sum()
    }
}

impl BarChart {
    fn marks(&self) -> usize {
        self.series
            .iter()
            .flat_map(|s| s.values.iter().take(self.categories.len()))
            .filter(|v| v.is_some_and(f64::is_finite))
            .count()
    }
}

impl ScatterChart {
    fn marks(&self) -> usize {
        self.points.iter().filter(|p| finite(&(p.x, p.y))).count()
    }
}

impl Chart {
    pub fn id(&self) -> &str {
        match self {
            Chart::Line(c) => &c.id,
            Chart::Bar(c) => &c.id,
            Chart::Scatter(c) => &c.id,
            Chart::Pareto(c) => &c.id,
        }
    }

    pub fn title(&self) -> &str {
        match self {
            Chart::Line(c) => &c.title,
            Chart::Bar(c) => &c.title,
            Chart::Scatter(c) => &c.title,
            Chart::Pareto(c) => &c.title,
        }
    }

    /// How many marks (points or bars) the chart draws: its finite data points.
    pub fn marks(&self) -> usize {
        match self {
            Chart::Line(c) => c.marks(),
            Chart::Bar(c) => c.marks(),
            Chart::Scatter(c) => c.marks(),
            Chart::Pareto(c) => c.drawn().len(),
        }
    }

    pub fn to_svg(&self) -> String {
        match self {
            Chart::Line(c) => line_svg(c),
            Chart::Bar(c) => bar_svg(c),
            Chart::Scatter(c) => scatter_svg(c),
            Chart::Pareto(c) => pareto_svg(c),
        }
    }
}

/// The range `[lo, hi]` that holds every finite value (and zero when asked), widened when all
/// values are equal; `None` when there is no finite value or the span overflows.
pub fn domain(values: impl IntoIterator<Item = f64>, include_zero: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) =
        values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<(f64, f64)>, v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })?;
    if include_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        if !(include_zero && lo >= 0.0) {
            lo -= pad;
        }
        hi += pad;
    }
    ((hi - lo).is_finite() && hi > lo).then_some((lo, hi))
}

/// About `target` round tick values (1, 2 or 5 × 10^k apart) inside `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return if lo.is_finite() { vec![lo] } else { vec![] };
    }
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = magnitude
        * match raw / magnitude {
            n if n < 1.5 => 1.0,
            n if n < 3.0 => 2.0,
            n if n < 7.0 => 5.0,
            _ => 10.0,
        };
    let first = (lo / step).ceil();
    (0..=100)
        .map(|i| (first + i as f64) * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .map(|t| if t.abs() < step * 1e-9 { 0.0 } else { t })
        .collect()
}

/// Widen `hi` to the next round tick, so the top gridline sits at the top of the plot.
fn nice_top(lo: f64, hi: f64) -> f64 {
    match nice_ticks(lo, hi, 5).as_slice() {
        [.., a, b] if *b < hi - (b - a) * 1e-9 => b + (b - a),
        _ => hi,
    }
}

/// A tick label: integers plainly, other values with up to 3 significant decimals.
pub fn tick_label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Linear map from a data range onto a pixel range.
#[derive(Debug, Clone, Copy)]
struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    fn at(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

struct Frame {
    height: f64,
    x: Scale,
    y: Scale,
}

fn open_svg(out: &mut String, id: &str, kind: &str, title: &str, height: f64, marks: usize) {
    let _ = write!(
        out,
        "<svg class=\"chart\" id=\"{}\" data-kind=\"{kind}\" data-marks=\"{marks}\" role=\"img\" aria-label=\"{}\" width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\">",
        esc(id),
        esc(title)
    );
    let _ = write!(
        out,
        "<text class=\"chart-title\" x=\"{:.1}\" y=\"20\" text-anchor=\"middle\">{}</text>",
        WIDTH / 2.0,
        esc(title)
    );
}

fn no_data(id: &str, kind: &str, title: &str) -> String {
    let mut out = String::new();
    let height = TOP + 60.0;
    open_svg(&mut out, id, kind, title, height, 0);
    let _ = write!(
        out,
        "<text class=\"no-data\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text></svg>",
        WIDTH / 2.0,
        TOP + 30.0
    );
    out
}

fn legend_height(rows: usize) -> f64 {
    rows as f64 * LEGEND_ROW + if rows > 0 { 8.0 } else { 0.0 }
}

fn frame(x: (f64, f64), y: (f64, f64), legend_rows: usize) -> Frame {
    let plot_bottom = TOP + PLOT_HEIGHT;
    Frame {
        height: plot_bottom + BOTTOM + legend_height(legend_rows),
        x: Scale {
            d0: x.0,
            d1: x.1,
            r0: LEFT,
            r1: WIDTH - RIGHT,
        },
        y: Scale {
            d0: y.0,
            d1: y.1,
            r0: plot_bottom,
            r1: TOP,
        },
    }
}

/// Horizontal gridlines with y tick labels, the axes, and the axis titles.
fn axes(out: &mut String, f: &Frame, y_ticks: &[f64], x_label: &str, y_label: &str) {
    let plot_bottom = TOP + PLOT_HEIGHT;
    for &t in y_ticks {
        let y = f.y.at(t);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&tick_label(t))
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{plot_bottom}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{plot_bottom}\" y2=\"{plot_bottom}\"/>",
        WIDTH - RIGHT
    );
    let _ = write!(
        out,
        "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        plot_bottom + 40.0,
        esc(x_label)
    );
    let _ = write!(
        out,
        "<text class=\"axis-label\" transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        TOP + PLOT_HEIGHT / 2.0,
        esc(y_label)
    );
}

fn x_tick(out: &mut String, f: &Frame, value: f64, text: &str, rotate: bool) {
    let x = f.x.at(value);
    let y = TOP + PLOT_HEIGHT + 16.0;
    let (anchor, transform) = if rotate {
        ("end", format!(" transform=\"rotate(-20 {x:.1} {y:.1})\""))
    } else {
        ("middle", String::new())
    };
    let _ = write!(
        out,
        "<text class=\"tick\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\"{transform}>{}</text>",
        esc(text)
    );
}

/// Legend rows below the plot: a swatch (line or box) and the series name.
fn legend(out: &mut String, entries: &[(String, usize, Stroke)]) {
    let top = TOP + PLOT_HEIGHT + BOTTOM;
    for (i, (name, color_index, stroke)) in entries.iter().enumerate() {
        let y = top + i as f64 * LEGEND_ROW + 12.0;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"3\"{}/><text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            LEFT + 24.0,
            color(*color_index),
            stroke.dasharray(),
            LEFT + 32.0,
            y + 4.0,
            esc(name)
        );
    }
}

fn line_svg(c: &LineChart) -> String {
    let points = || {
        c.series
            .iter()
            .flat_map(|s| s.points.iter().filter(|p| finite(p)))
    };
    let (Some(x), Some(y)) = (
        domain(points().map(|p| p.0), false),
        domain(points().map(|p| p.1), true),
    ) else {
        return no_data(&c.id, "line", &c.title);
    };
    let y = (y.0, nice_top(y.0, y.1));
    // Few distinct x values (depths, concurrency levels): label exactly those.
    let mut xs: Vec<f64> = points().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let pad = (x.1 - x.0) * 0.04;
    let f = frame((x.0 - pad, x.1 + pad), y, c.series.len());
    let mut out = String::new();
    open_svg(&mut out, &c.id, "line", &c.title, f.height, c.marks());
    axes(
        &mut out,
        &f,
        &nice_ticks(y.0, y.1, 5),
        &c.x_label,
        &c.y_label,
    );
    let x_ticks = if xs.len() <= 12 {
        xs
    } else {
        nice_ticks(x.0, x.1, 8)
    };
    for t in x_ticks {
        x_tick(&mut out, &f, t, &tick_label(t), false);
    }
    for s in &c.series {
        line_series(&mut out, &f, s);
    }
    let entries: Vec<(String, usize, Stroke)> = c
        .series
        .iter()
        .map(|s| (s.name.clone(), s.color, s.stroke))
        .collect();
    legend(&mut out, &entries);
    out.push_str("</svg>");
    out
}

/// One series: its polyline, then a mark per point.
fn line_series(out: &mut String, f: &Frame, s: &Series) {
    let mut pts: Vec<(f64, f64)> = s.points.iter().copied().filter(finite).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let path: Vec<String> = pts
        .iter()
        .map(|p| format!("{:.1},{:.1}", f.x.at(p.0), f.y.at(p.1)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"series\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>",
        color(s.color),
        s.stroke.dasharray(),
        path.join(" ")
    );
    for p in &pts {
        let _ = write!(
            out,
            "<circle class=\"mark\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"><title>{}: {}, {}</title></circle>",
            f.x.at(p.0),
            f.y.at(p.1),
            color(s.color),
            esc(&s.name),
            esc(&tick_label(p.0)),
            esc(&format!("{:.2}", p.1))
        );
    }
}

fn bar_svg(c: &BarChart) -> String {
    let values = || {
        c.series
            .iter()
            .flat_map(|s| s.values.iter().take(c.categories.len()).flatten().copied())
    };
    let Some(y) = domain(values(), true).filter(|_| !c.categories.is_empty()) else {
        return no_data(&c.id, "bar", &c.title);
    };
    let y = (y.0, nice_top(y.0, y.1));
    let n = c.categories.len() as f64;
    let f = frame((0.0, n), y, c.series.len());
    let mut out = String::new();
    open_svg(&mut out, &c.id, "bar", &c.title, f.height, c.marks());
    axes(&mut out, &f, &nice_ticks(y.0, y.1, 5), "", &c.y_label);
    let rotate = c.categories.len() > 4;
    let group = f.x.at(1.0) - f.x.at(0.0);
    let bar = group * 0.8 / c.series.len().max(1) as f64;
    for (ci, category) in c.categories.iter().enumerate() {
        x_tick(&mut out, &f, ci as f64 + 0.5, category, rotate);
        for (si, s) in c.series.iter().enumerate() {
            let Some(v) = s
                .values
                .get(ci)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let x = f.x.at(ci as f64) + group * 0.1 + bar * si as f64;
            let (top, bottom) = (f.y.at(v.max(0.0)), f.y.at(v.min(0.0)));
            let _ = write!(
                out,
                "<rect class=\"mark\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                (bar - 1.0).max(1.0),
                (bottom - top).max(1.0),
                color(si),
                esc(&s.name),
                esc(category),
                esc(&format!("{v:.2}"))
            );
        }
    }
    let entries: Vec<(String, usize, Stroke)> = c
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i, Stroke::Solid))
        .collect();
    legend(&mut out, &entries);
    out.push_str("</svg>");
    out
}

fn scatter_svg(c: &ScatterChart) -> String {
    let points: Vec<&ScatterPoint> = c.points.iter().filter(|p| finite(&(p.x, p.y))).collect();
    let (Some(x), Some(y)) = (
        domain(points.iter().map(|p| p.x), true),
        domain(points.iter().map(|p| p.y), true),
    ) else {
        return no_data(&c.id, "scatter", &c.title);
    };
    let (x, y) = ((x.0, nice_top(x.0, x.1)), (y.0, nice_top(y.0, y.1)));
    let f = frame(x, y, 2);
    let mut out = String::new();
    open_svg(&mut out, &c.id, "scatter", &c.title, f.height, c.marks());
    axes(
        &mut out,
        &f,
        &nice_ticks(y.0, y.1, 5),
        &c.x_label,
        &c.y_label,
    );
    for t in nice_ticks(x.0, x.1, 8) {
        x_tick(&mut out, &f, t, &tick_label(t), false);
    }
    for p in &points {
        let (px, py) = (f.x.at(p.x), f.y.at(p.y));
        let (class, fill, r) = if p.highlight {
            ("mark optimal", color(3), 6.0)
        } else {
            ("mark", "none", 4.5)
        };
        let _ = write!(
            out,
            "<circle class=\"{class}\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"{r}\" fill=\"{fill}\" stroke=\"{}\" stroke-width=\"2\"><title>{}</title></circle><text class=\"point-label\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            color(3),
            esc(&p.name),
            px + 8.0,
            py - 6.0,
            esc(&p.label)
        );
    }
    let top = TOP + PLOT_HEIGHT + BOTTOM;
    let _ = write!(
        out,
        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"6\" fill=\"{}\"/><text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">{}</text><circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/><text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">dominated</text></svg>",
        LEFT + 12.0,
        top + 12.0,
        color(3),
        LEFT + 32.0,
        top + 16.0,
        esc(&c.highlight_label),
        LEFT + 12.0,
        top + 12.0 + LEGEND_ROW,
        color(3),
        LEFT + 32.0,
        top + 16.0 + LEGEND_ROW,
    );
    out
}

fn pareto_svg(c: &ParetoChart) -> String {
    let points = c.drawn();
    let (Some(x), Some(y)) = (
        domain(points.iter().map(|p| p.x), false),
        domain(points.iter().flat_map(|p| [p.low, p.high, p.y]), true),
    ) else {
        return no_data(&c.id, "pareto", &c.title);
    };
    let pad = (x.1 - x.0) * 0.06;
    let y = (y.0, nice_top(y.0, y.1));
    let f = frame((x.0 - pad, x.1 + pad), y, 2);
    let mut out = String::new();
    open_svg(&mut out, &c.id, "pareto", &c.title, f.height, points.len());
    axes(
        &mut out,
        &f,
        &nice_ticks(y.0, y.1, 5),
        &c.x_label,
        &c.y_label,
    );
    for t in nice_ticks(x.0 - pad, x.1 + pad, 8) {
        x_tick(&mut out, &f, t, &tick_label(t), false);
    }
    front_line(&mut out, &f, &points);
    for p in &points {
        pareto_mark(&mut out, &f, p);
    }
    pareto_legend(&mut out);
    out.push_str("</svg>");
    out
}

/// The front, left to right (smallest memory first).
fn front_line(out: &mut String, f: &Frame, points: &[&ParetoMark]) {
    let mut front: Vec<&&ParetoMark> = points.iter().filter(|p| p.front).collect();
    front.sort_by(|a, b| a.x.total_cmp(&b.x));
    let path: Vec<String> = front
        .iter()
        .map(|p| format!("{:.1},{:.1}", f.x.at(p.x), f.y.at(p.y)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"front\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"6 4\" points=\"{}\"/>",
        color(0),
        path.join(" ")
    );
}

/// A CI whisker with caps, the marker of its fidelity outcome, its label and the winner's.
fn pareto_mark(out: &mut String, f: &Frame, p: &ParetoMark) {
    let (px, py) = (f.x.at(p.x), f.y.at(p.y));
    let (top, bottom) = (f.y.at(p.high), f.y.at(p.low));
    let ink = p.fidelity.color();
    let _ = write!(
        out,
        "<g class=\"mark {}{}\"><title>{}</title><path class=\"whisker\" d=\"M{px:.1} {top:.1}V{bottom:.1}M{:.1} {top:.1}H{:.1}M{:.1} {bottom:.1}H{:.1}\" stroke=\"{ink}\" stroke-width=\"1.2\" fill=\"none\"/>{}</g>",
        p.fidelity.name(),
        if p.winner { " winner" } else { "" },
        esc(&p.name),
        px - 4.0,
        px + 4.0,
        px - 4.0,
        px + 4.0,
        marker(p.fidelity, px, py, if p.winner { 7.0 } else { 5.0 })
    );
    let label = match p.winner {
        true => format!("{} winner", p.label),
        false => p.label.clone(),
    };
    let _ = write!(
        out,
        "<text class=\"point-label{}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        if p.winner { " winner-label" } else { "" },
        px + 9.0,
        py - 7.0,
        esc(&label)
    );
}

/// Pass: a filled circle; fail: a cross; unchecked: a hollow square.
fn marker(fidelity: Fidelity, x: f64, y: f64, r: f64) -> String {
    let ink = fidelity.color();
    match fidelity {
        Fidelity::Pass => format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" fill=\"{ink}\" stroke=\"#fff\"/>"
        ),
        Fidelity::Fail => format!(
            "<path d=\"M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}\" stroke=\"{ink}\" stroke-width=\"2.5\"/>",
            x - r, y - r, x + r, y + r, x - r, y + r, x + r, y - r
        ),
        Fidelity::Unchecked => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#fff\" stroke=\"{ink}\" stroke-width=\"2\"/>",
            x - r, y - r, 2.0 * r, 2.0 * r
        ),
    }
}

/// Two rows: the three fidelity markers, then the front's line.
fn pareto_legend(out: &mut String) {
    let top = TOP + PLOT_HEIGHT + BOTTOM + 12.0;
    let kinds = [Fidelity::Pass, Fidelity::Fail, Fidelity::Unchecked];
    for (i, kind) in kinds.into_iter().enumerate() {
        let x = LEFT + 12.0 + i as f64 * 150.0;
        let _ = write!(
            out,
            "{}<text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">fidelity {}</text>",
            marker(kind, x, top, 5.0),
            x + 14.0,
            top + 4.0,
            kind.name()
        );
    }
    let y = top + LEGEND_ROW;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">pareto front of the faithful points; whiskers: 95 % CI of the median</text>",
        LEFT + 24.0,
        color(0),
        LEFT + 32.0,
        y + 4.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: Vec<(f64, f64)>) -> Chart {
        Chart::Line(LineChart {
            id: "c".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: "s".into(),
                points,
                color: 0,
                stroke: Stroke::Solid,
            }],
        })
    }

    fn assert_drawable(svg: &str) {
        for bad in ["NaN", "inf", "\"-nan"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn single_point_is_drawn_inside_the_plot() {
        let chart = line(vec![(0.0, 42.0)]);
        let svg = chart.to_svg();
        assert_drawable(&svg);
        assert_eq!(chart.marks(), 1);
        assert_eq!(svg.matches("class=\"mark\"").count(), 1);
        assert!(svg.contains("data-marks=\"1\""));
    }

    #[test]
    fn all_equal_values_still_get_a_range() {
        assert_eq!(domain([5.0, 5.0, 5.0], false), Some((4.5, 5.5)));
        assert_eq!(domain([0.0, 0.0], false), Some((-1.0, 1.0)));
        assert_eq!(domain([0.0], true), Some((0.0, 1.0)));
        assert_eq!(domain([7.0], true), Some((0.0, 7.0)));
        let chart = line(vec![(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]);
        let svg = chart.to_svg();
        assert_drawable(&svg);
        assert_eq!(svg.matches("class=\"mark\"").count(), 3);
    }

    #[test]
    fn nan_and_empty_data_say_no_data() {
        for points in [vec![], vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)]] {
            let chart = line(points);
            let svg = chart.to_svg();
            assert_drawable(&svg);
            assert!(svg.contains("no data"), "{svg}");
            assert_eq!(chart.marks(), 0);
        }
        let bars = Chart::Bar(BarChart {
            id: "b".into(),
            title: "t".into(),
            y_label: "y".into(),
            categories: vec!["a".into()],
            series: vec![BarSeries {
                name: "s".into(),
                values: vec![None],
            }],
        });
        assert!(bars.to_svg().contains("no data"));
        assert_eq!(
            domain([f64::MAX, -f64::MAX], false),
            None,
            "overflowing span"
        );
    }

    #[test]
    fn finite_points_survive_beside_nan() {
        let chart = line(vec![(0.0, 1.0), (f64::NAN, 2.0), (2.0, 3.0)]);
        let svg = chart.to_svg();
        assert_drawable(&svg);
        assert_eq!(chart.marks(), 2);
        assert_eq!(svg.matches("class=\"mark\"").count(), 2);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 100.0, 5),
            [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        let labels: Vec<String> = nice_ticks(0.0, 1.0, 5)
            .into_iter()
            .map(tick_label)
            .collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(nice_ticks(3.0, 3.0, 5), [3.0]);
        assert_eq!(nice_top(0.0, 113.0), 120.0);
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(256.0), "256");
    }

    #[test]
    fn pareto_chart_draws_whiskers_markers_front_and_winner() {
        let mark = |label: &str, x: f64, y: f64, fidelity, front, winner| ParetoMark {
            label: label.into(),
            name: format!("{label} <b>"),
            x,
            y,
            low: y - 2.0,
            high: y + 2.0,
            fidelity,
            front,
            winner,
        };
        let chart = Chart::Pareto(ParetoChart {
            id: "tune-pareto-1".into(),
            title: "t".into(),
            x_label: "MiB".into(),
            y_label: "t/s".into(),
            points: vec![
                mark("1", 120.0, 100.0, Fidelity::Pass, true, true),
                mark("2", 110.0, 90.0, Fidelity::Pass, true, false),
                mark("3", 130.0, 110.0, Fidelity::Fail, false, false),
                mark("4", 125.0, f64::NAN, Fidelity::Unchecked, false, false),
            ],
        });
        let svg = chart.to_svg();
        assert_drawable(&svg);
        assert_eq!(chart.marks(), 3, "the NaN point is left out");
        assert!(svg.contains("data-kind=\"pareto\" data-marks=\"3\""));
        assert_eq!(svg.matches("class=\"whisker\"").count(), 3);
        assert_eq!(svg.matches("<g class=\"mark pass").count(), 2);
        assert_eq!(svg.matches("<g class=\"mark fail\"").count(), 1);
        assert_eq!(svg.matches("class=\"mark pass winner\"").count(), 1);
        assert!(svg.contains(">1 winner</text>"));
        // The front joins the two faithful front points, smallest memory first.
        let front = svg.split("class=\"front\"").nth(1).unwrap();
        let points = front.split("points=\"").nth(1).unwrap();
        let points = points.split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 2, "{points}");
        assert!(!svg.contains("<b>"), "tooltips are escaped");
    }

    #[test]
    fn text_is_escaped_in_svg() {
        let chart = Chart::Scatter(ScatterChart {
            id: "p\"><script>".into(),
            title: "</text><script>alert(1)</script>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            points: vec![ScatterPoint {
                label: "1".into(),
                name: "\"><img src=x onerror=alert(1)>".into(),
                x: 1.0,
                y: 2.0,
                highlight: true,
            }],
            highlight_label: "pareto".into(),
        });
        let svg = chart.to_svg();
        assert!(!svg.contains("<script") && !svg.contains("<img"), "{svg}");
        assert!(svg.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }
}
