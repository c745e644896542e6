//! Line charts: x and y axes with tick values and labels (log scales in
//! decades), a title, and a legend beside the plot naming each series,
//! its marker and what was left out of it.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ticks::{self, Ticks};
use super::{COLOURS, Draw, DrawResult, FONT, drawn};

/// An axis: what it shows (with units) and whether it is logarithmic.
#[derive(Clone, Debug)]
pub struct Axis {
    /// The axis label, e.g. "cumulative GWMs".
    pub label: String,
    /// A log₁₀ scale (values ≤ 0 are left out and counted).
    pub log: bool,
}

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend's name for it.
    pub name: String,
    /// Its points (x, y) in order; points with a non-finite coordinate are
    /// left out and counted in the legend.
    pub points: Vec<(f64, f64)>,
}

/// A line chart of one or more series.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// The title (what is plotted).
    pub title: String,
    /// A second, smaller title line (device, precision, data), or empty.
    pub subtitle: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// The lines, drawn in [`COLOURS`] order.
    pub series: Vec<Series>,
}

/// A series as drawn: its points in drawn coordinates and a note on what
/// was left out.
struct Drawn {
    points: Vec<(f64, f64)>,
    note: Option<String>,
}

const SIZE: (u32, u32) = (960, 600);
const LEGEND_MAX: usize = 40;

impl LineChart {
    fn drawn(&self) -> Vec<Drawn> {
        let on = |v: f64, log: bool| if log { v.log10() } else { v };
        self.series
            .iter()
            .map(|s| {
                let nan = s
                    .points
                    .iter()
                    .filter(|p| !(p.0.is_finite() && p.1.is_finite()))
                    .count();
                let finite = s
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite());
                let off_log = finite
                    .clone()
                    .filter(|p| (self.x.log && p.0 <= 0.0) || (self.y.log && p.1 <= 0.0))
                    .count();
                let points: Vec<(f64, f64)> = finite
                    .filter(|p| !((self.x.log && p.0 <= 0.0) || (self.y.log && p.1 <= 0.0)))
                    .map(|&(x, y)| (on(x, self.x.log), on(y, self.y.log)))
                    .collect();
                let mut notes = vec![];
                if s.points.is_empty() {
                    notes.push("no points".to_string());
                }
                if nan > 0 {
                    notes.push(format!("{nan} NaN skipped"));
                }
                if off_log > 0 {
                    notes.push(format!("{off_log} ≤ 0 off the log scale"));
                }
                Drawn {
                    points,
                    note: (!notes.is_empty()).then(|| notes.join(", ")),
                }
            })
            .collect()
    }
}

/// The drawn axis over drawn values `vs` (data units when linear).
fn axis_ticks(vs: impl Iterator<Item = f64> + Clone, log: bool) -> Ticks {
    let lo = vs.clone().fold(f64::INFINITY, f64::min);
    let hi = vs.fold(f64::NEG_INFINITY, f64::max);
    match (lo.is_finite(), log) {
        (false, false) => ticks::linear(0.0, 1.0),
        (false, true) => ticks::log(1.0, 10.0),
        (true, false) => ticks::linear(lo, hi),
        (true, true) => ticks::log(10f64.powf(lo), 10f64.powf(hi)),
    }
}

/// `name` cut to `max` characters.
fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        name.chars().take(max - 1).chain(['…']).collect()
    }
}

/// The series' colour and marker shape (index into [`MARKERS`]), by index.
fn style_of(k: usize) -> (RGBColor, usize) {
    let (r, g, b, _) = COLOURS[k % COLOURS.len()];
    (RGBColor(r, g, b), (k / COLOURS.len() + k) % MARKERS.len())
}

/// The markers, in the order series take them.
const MARKERS: [&str; 4] = ["circles", "triangles", "squares", "crosses"];

/// Series `k`'s colour and marker in words, e.g. ("blue", "circles").
pub fn series_style(k: usize) -> (&'static str, &'static str) {
    (COLOURS[k % COLOURS.len()].3, MARKERS[style_of(k).1])
}

/// A marker (circle, triangle, square, cross by `shape`) at pixel `at`.
fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    shape: usize,
    colour: RGBColor,
) -> DrawResult {
    let style = colour.filled();
    drawn(match shape {
        0 => area.draw(&Circle::new(at, 4, style)),
        1 => area.draw(&TriangleMarker::new(at, 5, style)),
        2 => area.draw(&Rectangle::new(
            [(at.0 - 4, at.1 - 4), (at.0 + 4, at.1 + 4)],
            style,
        )),
        _ => area.draw(&Cross::new(at, 4, colour.stroke_width(2))),
    })
}

impl Draw for LineChart {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn what(&self) -> String {
        format!("the chart '{}'", self.title)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (w, _) = SIZE;
        let series = self.drawn();
        let title = (FONT, 24).into_font().color(&BLACK);
        let small = (FONT, 15).into_font().color(&RGBColor(90, 90, 90));
        let centre = Pos::new(HPos::Center, VPos::Top);
        drawn(root.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, 10),
            title.pos(centre),
        )))?;
        if !self.subtitle.is_empty() {
            drawn(root.draw(&Text::new(
                self.subtitle.clone(),
                (w as i32 / 2, 42),
                small.pos(centre),
            )))?;
        }
        let (_, rest) = root.split_vertically(if self.subtitle.is_empty() { 48 } else { 68 });

        // The legend: notes on their own lines when everything fits, else
        // beside the names in smaller type; its width is its longest line.
        let entry = (FONT, 16).into_font().color(&BLACK);
        let note = (FONT, 13).into_font().color(&RGBColor(90, 90, 90));
        let bottom = rest.dim_in_pixel().1 as i32 - 8;
        let notes = series.iter().filter(|d| d.note.is_some()).count() as i32;
        let roomy = 16 + 28 * series.len() as i32 + 18 * notes <= bottom;
        let mut legend_w = 0u32;
        for (s, d) in self.series.iter().zip(&series) {
            let name = shorten(&s.name, LEGEND_MAX);
            let width = match (&d.note, roomy) {
                (Some(n), true) => drawn(rest.estimate_text_size(&name, &entry))?
                    .0
                    .max(drawn(rest.estimate_text_size(n, &note))?.0),
                (Some(n), false) => {
                    drawn(rest.estimate_text_size(&format!("{name}: {n}"), &note))?.0
                }
                (None, _) => drawn(rest.estimate_text_size(&name, &entry))?.0,
            };
            legend_w = legend_w.max(width);
        }
        let legend_w = (legend_w + 56).clamp(120, 360);
        let (plot, legend) = rest.split_horizontally(w - legend_w);

        let xt = axis_ticks(
            series.iter().flat_map(|d| d.points.iter().map(|p| p.0)),
            self.x.log,
        );
        let yt = axis_ticks(
            series.iter().flat_map(|d| d.points.iter().map(|p| p.1)),
            self.y.log,
        );
        let mut chart = drawn(
            ChartBuilder::on(&plot)
                .margin_left(12)
                .margin_right(16)
                .margin_bottom(8)
                .margin_top(8)
                .x_label_area_size(62)
                .y_label_area_size(86)
                .build_cartesian_2d(xt.clone(), yt.clone()),
        )?;
        let log_note = |a: &Axis| match (a.log, a.label.strip_suffix(')')) {
            (false, _) => a.label.clone(),
            (true, Some(open)) => format!("{open}, log scale)"),
            (true, None) => format!("{} (log scale)", a.label),
        };
        let x_fmt = |v: &f64| xt.label_at(*v);
        let y_fmt = |v: &f64| yt.label_at(*v);
        drawn(
            chart
                .configure_mesh()
                .x_desc(log_note(&self.x))
                .y_desc(log_note(&self.y))
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .label_style((FONT, 15))
                .axis_desc_style((FONT, 17))
                .bold_line_style(RGBColor(205, 205, 205))
                .light_line_style(RGBColor(238, 238, 238))
                .axis_style(BLACK)
                .draw(),
        )?;
        for (k, d) in series.iter().enumerate() {
            let (colour, shape) = style_of(k);
            if d.points.len() > 1 {
                drawn(chart.draw_series(LineSeries::new(
                    d.points.iter().copied(),
                    colour.stroke_width(2),
                )))?;
            }
            let area = chart.plotting_area();
            let origin = area.get_base_pixel();
            let strip = area.strip_coord_spec();
            // Dense lines get about a dozen markers, enough to tell them apart.
            let every = if d.points.len() > 60 {
                d.points.len().div_ceil(12)
            } else {
                1
            };
            for &p in d.points.iter().step_by(every) {
                let (px, py) = area.map_coordinate(&p);
                marker(&strip, (px - origin.0, py - origin.1), shape, colour)?;
            }
        }
        if series.iter().all(|d| d.points.is_empty()) {
            let area = chart.plotting_area();
            let (cx, cy) = area.get_pixel_range();
            let mid = ((cx.end - cx.start) / 2, (cy.end - cy.start) / 2);
            drawn(
                area.strip_coord_spec().draw(&Text::new(
                    "no finite points to plot",
                    mid,
                    (FONT, 18)
                        .into_font()
                        .color(&RGBColor(90, 90, 90))
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )),
            )?;
        }

        // The legend, top-aligned beside the plot; past the bottom, a count
        // of the series left out.
        let step = if roomy { 28 } else { 21 };
        let mut y = 16;
        for (k, (s, d)) in self.series.iter().zip(&series).enumerate() {
            let height = step + if roomy && d.note.is_some() { 18 } else { 0 };
            let reserve = if k + 1 == series.len() { 0 } else { 18 };
            if y + height + reserve > bottom {
                let more = format!("and {} more series", series.len() - k);
                drawn(legend.draw(&Text::new(more, (8, y), note.clone())))?;
                break;
            }
            let (colour, shape) = style_of(k);
            drawn(legend.draw(&PathElement::new(
                vec![(4, y + 9), (36, y + 9)],
                colour.stroke_width(2),
            )))?;
            marker(&legend, (20, y + 9), shape, colour)?;
            let name = shorten(&s.name, LEGEND_MAX);
            match (&d.note, roomy) {
                (Some(n), true) => {
                    drawn(legend.draw(&Text::new(name, (44, y), entry.clone())))?;
                    drawn(legend.draw(&Text::new(n.clone(), (44, y + 22), note.clone())))?;
                }
                (Some(n), false) => {
                    let text = format!("{name}: {n}");
                    drawn(legend.draw(&Text::new(text, (44, y + 2), note.clone())))?;
                }
                (None, _) => drawn(legend.draw(&Text::new(name, (44, y), entry.clone())))?,
            }
            y += height;
        }
        Ok(())
    }
}
