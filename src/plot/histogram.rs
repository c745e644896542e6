//! Histogram panels: one histogram per list of values (e.g. per code
//! node), each with its name, value and count axes, under one title.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ticks;
use super::{Draw, DrawResult, FONT, drawn};

/// One histogram: a name and the values it counts.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Its name (shown above it).
    pub name: String,
    /// The values; non-finite ones are left out and counted.
    pub values: Vec<f64>,
}

/// Histogram panels in a grid of up to four columns.
#[derive(Clone, Debug)]
pub struct Histograms {
    /// The title over all panels.
    pub title: String,
    /// The label of every panel's value axis.
    pub x_label: String,
    /// Bins per panel, over each panel's own range.
    pub bins: usize,
    /// The panels, in order; past [`MAX_PANELS`] only the first are drawn
    /// and the title says so.
    pub panels: Vec<Panel>,
}

/// The most panels drawn.
pub const MAX_PANELS: usize = 64;
const PANEL: (u32, u32) = (320, 250);
const HEADER: u32 = 48;

impl Histograms {
    fn shown(&self) -> usize {
        self.panels.len().min(MAX_PANELS)
    }

    fn cols(&self) -> usize {
        self.shown().clamp(1, 4)
    }
}

/// Counts of `values` in `bins` equal bins over their range: (lo, hi,
/// counts, non-finite values left out).
fn bin(values: &[f64], bins: usize) -> (f64, f64, Vec<usize>, usize) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let skipped = values.len() - finite.len();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bins = bins.max(1);
    let mut counts = vec![0usize; bins];
    if finite.is_empty() {
        return (0.0, 1.0, counts, skipped);
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    for v in finite {
        let t = (v - lo) / (hi - lo);
        counts[((t * bins as f64) as usize).min(bins - 1)] += 1;
    }
    (lo, hi, counts, skipped)
}

impl Draw for Histograms {
    fn size(&self) -> (u32, u32) {
        let rows = self.shown().div_ceil(self.cols()).max(1);
        (self.cols() as u32 * PANEL.0, HEADER + rows as u32 * PANEL.1)
    }

    fn what(&self) -> String {
        format!("the histograms '{}'", self.title)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (w, _) = self.size();
        let mut title = self.title.clone();
        if self.panels.len() > self.shown() {
            title += &format!(" (the first {} of {})", self.shown(), self.panels.len());
        }
        drawn(
            root.draw(&Text::new(
                title,
                (w as i32 / 2, 10),
                (FONT, 22)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            )),
        )?;
        let (_, grid) = root.split_vertically(HEADER);
        let rows = self.shown().div_ceil(self.cols()).max(1);
        let cells = grid.split_evenly((rows, self.cols()));
        for (panel, cell) in self.panels.iter().zip(&cells) {
            let (lo, hi, counts, skipped) = bin(&panel.values, self.bins);
            let top = counts.iter().copied().max().unwrap_or(0).max(1);
            let xt = ticks::linear(lo, hi);
            let yt = ticks::linear(0.0, top as f64);
            let mut caption = panel.name.clone();
            if skipped > 0 {
                caption += &format!(" ({skipped} non-finite left out)");
            }
            let mut chart = drawn(
                ChartBuilder::on(cell)
                    .caption(caption, (FONT, 16))
                    .margin(6)
                    .margin_right(14)
                    .x_label_area_size(40)
                    .y_label_area_size(52)
                    .build_cartesian_2d(xt.clone(), yt.clone()),
            )?;
            let x_fmt = |v: &f64| xt.label_at(*v);
            let y_fmt = |v: &f64| yt.label_at(*v);
            drawn(
                chart
                    .configure_mesh()
                    .x_desc(self.x_label.clone())
                    .y_desc("items")
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&y_fmt)
                    .label_style((FONT, 12))
                    .axis_desc_style((FONT, 13))
                    .bold_line_style(RGBColor(225, 225, 225))
                    .axis_style(BLACK)
                    .draw(),
            )?;
            let width = (hi - lo) / counts.len() as f64;
            drawn(
                chart.draw_series(
                    counts
                        .iter()
                        .enumerate()
                        .filter(|c| *c.1 > 0)
                        .map(|(b, &n)| {
                            let x0 = lo + b as f64 * width;
                            Rectangle::new(
                                [(x0, 0.0), (x0 + width, n as f64)],
                                RGBColor(31, 119, 180).filled(),
                            )
                        }),
                ),
            )?;
        }
        Ok(())
    }
}
