//! Figures: line charts ([`LineChart`]), histogram panels
//! ([`Histograms`]) and captioned image grids ([`ImageGrid`]), drawn with
//! `plotters` into PNG (its bitmap backend, encoded by `image`) and SVG
//! (its SVG backend, text kept as text).
//!
//! Text is set in DejaVu Sans, compiled in from `assets/fonts` (its
//! licence lies beside it), so a figure looks the same on a headless
//! server without fonts; no font is looked up at run time.

mod chart;
mod grid;
mod histogram;
mod metrics;
mod ticks;

pub use chart::{Axis, LineChart, Series, series_style};
pub use grid::{ImageGrid, Pixels, rows_grid};
pub use histogram::{Histograms, Panel};
pub use metrics::{field_label, metrics_curve};

use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, DrawingBackend, IntoDrawingArea, SVGBackend};

use crate::error::{Error, Result};

/// A figure's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PNG (a bitmap).
    Png,
    /// SVG (vectors, with its text as text).
    Svg,
}

impl Format {
    /// The file extension, without the dot.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// Which formats to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Formats {
    /// PNG only.
    Png,
    /// SVG only.
    Svg,
    /// PNG and SVG.
    #[default]
    Both,
}

impl Formats {
    /// The formats, PNG first.
    pub fn list(self) -> &'static [Format] {
        match self {
            Formats::Png => &[Format::Png],
            Formats::Svg => &[Format::Svg],
            Formats::Both => &[Format::Png, Format::Svg],
        }
    }
}

/// The font every figure's text is set in.
const FONT: &str = "sans-serif";

/// Registers the embedded font once; every drawing calls this first.
fn font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font(FONT, plotters::style::FontStyle::Normal, bytes).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(figure_error("the embedded font", "it could not be parsed"))
    }
}

fn figure_error(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Figure {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Something drawn the same way on either backend.
trait Draw {
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);
    /// What is drawn, for messages.
    fn what(&self) -> String;
    /// Draws onto `root`, the whole canvas, already filled white.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
}

/// A chart written as PNG or SVG.
pub trait Figure {
    /// The figure as PNG bytes.
    fn png(&self) -> Result<Vec<u8>>;
    /// The figure as SVG text.
    fn svg(&self) -> Result<Vec<u8>>;
    /// The figure in `format`.
    fn render(&self, format: Format) -> Result<Vec<u8>> {
        match format {
            Format::Png => self.png(),
            Format::Svg => self.svg(),
        }
    }
}

impl<F: Draw> Figure for F {
    fn png(&self) -> Result<Vec<u8>> {
        png(self)
    }
    fn svg(&self) -> Result<Vec<u8>> {
        svg(self)
    }
}

/// A drawing error, as text (the backends' error types differ).
type DrawResult = std::result::Result<(), String>;

/// Maps a plotters error into a [`DrawResult`] error.
fn drawn<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> std::result::Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// `figure` as an RGB canvas (3 bytes per pixel, row-major).
fn rgb<F: Draw>(figure: &F) -> Result<(u32, u32, Vec<u8>)> {
    font()?;
    let (w, h) = figure.size();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| drawn(root.present()))
            .map_err(|e| figure_error(&figure.what(), e))?;
    }
    Ok((w, h, buf))
}

/// `figure` as PNG bytes.
fn png<F: Draw>(figure: &F) -> Result<Vec<u8>> {
    let (w, h, buf) = rgb(figure)?;
    let img = image::RgbImage::from_raw(w, h, buf).expect("canvas size");
    encode(image::DynamicImage::ImageRgb8(img))
}

/// An image as PNG bytes.
pub(crate) fn encode(img: image::DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| figure_error("a PNG", e))?;
    Ok(bytes)
}

/// `figure` as SVG text.
fn svg<F: Draw>(figure: &F) -> Result<Vec<u8>> {
    font()?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, figure.size()).into_drawing_area();
        drawn(root.fill(&plotters::style::WHITE))
            .and_then(|()| figure.draw(&root))
            .and_then(|()| drawn(root.present()))
            .map_err(|e| figure_error(&figure.what(), e))?;
    }
    Ok(text.into_bytes())
}

/// Series colours in order (the Tableau 10 palette: blue, orange, green,
/// red, purple, brown, pink, grey, olive, cyan), told apart in grey print
/// by their markers.
pub const COLOURS: [(u8, u8, u8, &str); 10] = [
    (31, 119, 180, "blue"),
    (255, 127, 14, "orange"),
    (44, 160, 44, "green"),
    (214, 39, 40, "red"),
    (148, 103, 189, "purple"),
    (140, 86, 75, "brown"),
    (227, 119, 194, "pink"),
    (127, 127, 127, "grey"),
    (188, 189, 34, "olive"),
    (23, 190, 207, "cyan"),
];
