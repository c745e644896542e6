//! Image grids (reconstructions, samples, features, exempted items): the
//! images at their own pixel size with 1-pixel gaps, under a caption that
//! says what the rows and columns are.

use plotters::prelude::*;

use super::{FONT, drawn, figure_error};
use crate::error::{Error, Result};

/// How pixel values become grey levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pixels {
    /// Values clamped to [0, 1] (0 black, 1 white).
    Clamp,
    /// Each image scaled to its own maximum (NMF features).
    PerImageMax,
}

/// Images in a grid under a caption.
#[derive(Clone, Debug)]
pub struct ImageGrid<'a> {
    /// The cells, row by row; `None` leaves a cell empty (so a block can
    /// start on a new row).
    pub cells: Vec<Option<&'a [f64]>>,
    /// Every image's height and width in pixels.
    pub shape: (usize, usize),
    /// Images per row.
    pub cols: usize,
    /// How values become grey levels.
    pub pixels: Pixels,
    /// Caption lines above the grid (wrapped to its width).
    pub caption: Vec<String>,
}

/// Width of the caption's canvas at least, so a grid of small images
/// still gets a readable caption.
const MIN_WIDTH: usize = 480;
const CAPTION_PX: u32 = 14;
const LINE_PX: usize = 18;

/// A grid of the first `take` rows of each block (what, rows of width
/// h·w), `per_row` images to a grid row, each block starting on a new grid
/// row; the caption names the title and which grid rows hold which block.
pub fn rows_grid<'a>(
    title: &str,
    blocks: &[(&str, &'a [f64])],
    shape: (usize, usize),
    take: usize,
    per_row: usize,
) -> ImageGrid<'a> {
    let d = (shape.0 * shape.1).max(1);
    let per_row = per_row.max(1);
    let mut cells = vec![];
    let mut parts = vec![];
    for (what, b) in blocks {
        let n = take.min(b.len() / d);
        if n == 0 {
            continue;
        }
        let first = cells.len() / per_row + 1;
        cells.extend((0..n).map(|i| Some(&b[i * d..(i + 1) * d])));
        cells.resize(cells.len().div_ceil(per_row) * per_row, None);
        let last = cells.len() / per_row;
        let rows = if first == last {
            format!("row {first}")
        } else {
            format!("rows {first}–{last}")
        };
        parts.push(format!("{rows}: {what}"));
    }
    let mut caption = vec![title.to_string()];
    if !parts.is_empty() {
        caption.push(format!("{}; {} per row.", parts.join("; "), per_row));
    }
    ImageGrid {
        cells,
        shape,
        cols: per_row,
        pixels: Pixels::Clamp,
        caption,
    }
}

impl ImageGrid<'_> {
    /// The grid as a greyscale PNG.
    pub fn png(&self) -> Result<Vec<u8>> {
        let (h, w) = self.shape;
        for (n, im) in self.cells.iter().enumerate() {
            if let Some(im) = im {
                if im.len() != h * w {
                    return Err(Error::Input(format!(
                        "image {n} has {} pixels, not {h}×{w}",
                        im.len()
                    )));
                }
            }
        }
        let cols = self.cols.max(1).min(self.cells.len().max(1));
        let rows = self.cells.len().div_ceil(cols).max(1);
        let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
        let width = gw.max(MIN_WIDTH);
        let lines = self.caption_lines(width)?;
        let cap_h = if lines.is_empty() {
            0
        } else {
            lines.len() * LINE_PX + 12
        };
        let text = self.caption_pixels(&lines, width, cap_h)?;
        let mut img =
            image::GrayImage::from_pixel(width as u32, (cap_h + gh) as u32, image::Luma([255]));
        for (i, px) in text.chunks_exact(3).enumerate() {
            img.put_pixel((i % width) as u32, (i / width) as u32, image::Luma([px[0]]));
        }
        let left = (width - gw) / 2;
        for y in 0..gh {
            for x in 0..gw {
                img.put_pixel((left + x) as u32, (cap_h + y) as u32, image::Luma([64]));
            }
        }
        for (n, im) in self.cells.iter().enumerate() {
            let Some(im) = im else { continue };
            let scale = match self.pixels {
                Pixels::Clamp => 1.0,
                Pixels::PerImageMax => {
                    let m = im.iter().fold(0.0f64, |a, &b| a.max(b));
                    if m > 0.0 { 1.0 / m } else { 1.0 }
                }
            };
            let (r0, c0) = (
                cap_h + (n / cols) * (h + 1) + 1,
                left + (n % cols) * (w + 1) + 1,
            );
            for r in 0..h {
                for c in 0..w {
                    let v = (im[r * w + c] * scale).clamp(0.0, 1.0);
                    let v = if v.is_nan() { 0.0 } else { v };
                    img.put_pixel(
                        (c0 + c) as u32,
                        (r0 + r) as u32,
                        image::Luma([(v * 255.0).round() as u8]),
                    );
                }
            }
        }
        super::encode(image::DynamicImage::ImageLuma8(img))
    }

    /// The caption's words wrapped to lines that fit `width` pixels.
    fn caption_lines(&self, width: usize) -> Result<Vec<String>> {
        super::font()?;
        let mut probe = [255u8; 3];
        let area = BitMapBackend::with_buffer(&mut probe, (1, 1)).into_drawing_area();
        let style = (FONT, CAPTION_PX).into_text_style(&area);
        let fits = |s: &str| {
            area.estimate_text_size(s, &style)
                .map(|(w, _)| (w as usize) < width - 16)
                .map_err(|e| figure_error("a caption", e))
        };
        let mut lines = vec![];
        for para in &self.caption {
            let mut line = String::new();
            for word in para.split_whitespace() {
                let longer = if line.is_empty() {
                    word.to_string()
                } else {
                    format!("{line} {word}")
                };
                if line.is_empty() || fits(&longer)? {
                    line = longer;
                } else {
                    lines.push(std::mem::replace(&mut line, word.to_string()));
                }
            }
            if !line.is_empty() {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// The caption drawn black on white, RGB, `width` × `height`.
    fn caption_pixels(&self, lines: &[String], width: usize, height: usize) -> Result<Vec<u8>> {
        let mut buf = vec![255u8; width * height * 3];
        if height == 0 {
            return Ok(buf);
        }
        {
            let area = BitMapBackend::with_buffer(&mut buf, (width as u32, height as u32))
                .into_drawing_area();
            let style = (FONT, CAPTION_PX).into_font().color(&BLACK);
            for (i, line) in lines.iter().enumerate() {
                drawn(area.draw(&Text::new(
                    line.clone(),
                    (8, 6 + (i * LINE_PX) as i32),
                    style.clone(),
                )))
                .and_then(|()| drawn(area.present()))
                .map_err(|e| figure_error("a caption", e))?;
            }
        }
        Ok(buf)
    }
}
