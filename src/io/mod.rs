//! The files gradfree writes and reads back itself: atomic writes (to a
//! temporary name in the same directory, then renamed, so a killed run
//! never leaves a torn file), safetensors models and checkpoints, PNG
//! image grids and line plots. Dataset loaders are in [`crate::data`].

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The bytes of an input file (a model, a checkpoint, a net file); a
/// missing or unreadable file is bad input.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))
}

/// An input file as text.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| Error::Input(format!("{} is not UTF-8 text", path.display())))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if written.is_err() {
        // Leave no temporary file behind a failed write.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A named f64 tensor (row-major) for [`safetensors_bytes`].
#[derive(Clone, Debug)]
pub struct NamedTensor {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f64>,
}

/// Serializes tensors (stored as F64) with the run's hyperparameters as
/// JSON under the metadata key `gradfree`.
pub fn safetensors_bytes(tensors: &[NamedTensor], metadata: &serde_json::Value) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F64, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Input(format!("tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("gradfree".to_string(), metadata.to_string());
    safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| Error::Input(format!("safetensors: {e}")))
}

/// A PNG of images (each `h × w`, row-major, any range) laid out in a grid
/// of `cols` columns with 1-pixel gaps; each image is scaled to its own
/// maximum when `per_image_scale`, else values are clamped to [0, 1].
pub fn png_grid(
    images: &[Vec<f64>],
    h: usize,
    w: usize,
    cols: usize,
    per_image_scale: bool,
) -> Result<Vec<u8>> {
    let cols = cols.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut img = image::GrayImage::from_pixel(gw as u32, gh as u32, image::Luma([64]));
    for (n, im) in images.iter().enumerate() {
        if im.len() != h * w {
            return Err(Error::Input(format!(
                "image {n} has {} pixels, not {h}×{w}",
                im.len()
            )));
        }
        let scale = if per_image_scale {
            let m = im.iter().fold(0.0f64, |a, &b| a.max(b));
            if m > 0.0 { 1.0 / m } else { 1.0 }
        } else {
            1.0
        };
        let (r0, c0) = ((n / cols) * (h + 1) + 1, (n % cols) * (w + 1) + 1);
        for r in 0..h {
            for c in 0..w {
                let v = (im[r * w + c] * scale).clamp(0.0, 1.0);
                img.put_pixel(
                    (c0 + c) as u32,
                    (r0 + r) as u32,
                    image::Luma([(v * 255.0).round() as u8]),
                );
            }
        }
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Input(format!("PNG encoding: {e}")))?;
    Ok(bytes)
}

/// Tensors by name: (shape, row-major values).
pub type TensorMap = std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads F64 tensors and the `gradfree` metadata written by [`safetensors_bytes`].
pub fn read_safetensors(bytes: &[u8]) -> Result<(TensorMap, serde_json::Value)> {
    use safetensors::SafeTensors;
    let bad = |why: String| Error::Input(format!("not a readable safetensors file: {why}"));
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("gradfree"))
        .map(|s| serde_json::from_str(s).map_err(|e| bad(e.to_string())))
        .transpose()?
        .unwrap_or(serde_json::Value::Null);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F64 {
            return Err(bad(format!("tensor {name} is not F64")));
        }
        let data = view
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok((out, meta))
}

/// A line plot PNG (640 × 400) of `series` (name, points (x, y)), x on a
/// log₁₀ axis when `log_x`; each series in its own colour, with tick marks
/// at the decades (log) or at 5 even steps and no text (the legend is the
/// caller's: colours in `PLOT_COLOURS` order).
pub fn line_plot(series: &[(String, Vec<(f64, f64)>)], log_x: bool) -> Result<Vec<u8>> {
    let (w, h, m) = (640u32, 400u32, 40i64);
    let tx = |x: f64| if log_x { x.max(1e-12).log10() } else { x };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|&(x, y)| (tx(x), y)))
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(Error::Input("nothing to plot".into()));
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (0.0f64, f64::NEG_INFINITY);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if log_x {
        (x0, x1) = (x0.floor(), x1.ceil());
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let px = |x: f64| m as f64 + (x - x0) / (x1 - x0) * (w as i64 - 2 * m) as f64;
    let py = |y: f64| (h as i64 - m) as f64 - (y - y0) / (y1 - y0) * (h as i64 - 2 * m) as f64;
    let dot = |img: &mut image::RgbImage, x: i64, y: i64, c: [u8; 3]| {
        if x >= 0 && y >= 0 && x < w as i64 && y < h as i64 {
            img.put_pixel(x as u32, y as u32, image::Rgb(c));
        }
    };
    // Axes and ticks.
    for x in m..=(w as i64 - m) {
        dot(&mut img, x, h as i64 - m, [0, 0, 0]);
    }
    for y in m..=(h as i64 - m) {
        dot(&mut img, m, y, [0, 0, 0]);
    }
    let xt: Vec<f64> = if log_x {
        (x0 as i64..=x1 as i64).map(|d| d as f64).collect()
    } else {
        (0..=5).map(|i| x0 + (x1 - x0) * i as f64 / 5.0).collect()
    };
    for t in xt {
        for d in 0..6 {
            dot(&mut img, px(t).round() as i64, h as i64 - m + d, [0, 0, 0]);
        }
    }
    for i in 0..=5 {
        let y = py(y0 + (y1 - y0) * i as f64 / 5.0).round() as i64;
        for d in 0..6 {
            dot(&mut img, m - d, y, [0, 0, 0]);
        }
        for x in (m..w as i64 - m).step_by(4) {
            dot(&mut img, x, y, [210, 210, 210]);
        }
    }
    for (k, s) in series.iter().enumerate() {
        let c = PLOT_COLOURS[k % PLOT_COLOURS.len()];
        let p: Vec<(f64, f64)> =
            s.1.iter()
                .map(|&(x, y)| (px(tx(x)), py(y)))
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
        for seg in p.windows(2) {
            let n = ((seg[1].0 - seg[0].0).abs().max((seg[1].1 - seg[0].1).abs()) as usize).max(1);
            for i in 0..=n {
                let t = i as f64 / n as f64;
                let (x, y) = (
                    seg[0].0 + t * (seg[1].0 - seg[0].0),
                    seg[0].1 + t * (seg[1].1 - seg[0].1),
                );
                for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                    dot(&mut img, x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
        // A 5 × 5 marker per point: a one-epoch run is one point, no line.
        for &(x, y) in &p {
            for dx in -2..=2 {
                for dy in -2..=2 {
                    dot(&mut img, x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Input(format!("PNG encoding: {e}")))?;
    Ok(bytes)
}

/// Series colours of [`line_plot`], in order: blue, red, green, orange, purple.
pub const PLOT_COLOURS: [[u8; 3]; 5] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
];

/// A grid PNG, 16 images per grid row, of the first `take` rows of each
/// block (so blocks of 16 line up: targets above reconstructions).
pub fn rows_png(blocks: &[&[f64]], shape: (usize, usize), take: usize) -> Result<Vec<u8>> {
    let d = shape.0 * shape.1;
    let mut images = vec![];
    for b in blocks {
        for i in 0..take.min(b.len() / d) {
            images.push(b[i * d..(i + 1) * d].to_vec());
        }
    }
    png_grid(&images, shape.0, shape.1, 16, false)
}

/// Rows of width `d` as CSV lines.
pub fn rows_csv(x: &[f64], d: usize) -> String {
    let mut s = String::new();
    for row in x.chunks(d.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        s += &cells.join(",");
        s.push('\n');
    }
    s
}

/// A square image shape for widths that are perfect squares ≥ 16.
pub fn square_shape(d: usize) -> Option<(usize, usize)> {
    let s = (d as f64).sqrt().round() as usize;
    (d >= 16 && s * s == d).then_some((s, s))
}

/// One histogram per list side by side (the per-code-node distributions,
/// the paper's figure 20): `bins` bins over each list's range, bar heights
/// scaled to the tallest bin.
pub fn histogram_strip(lists: &[Vec<f64>], bins: usize) -> Result<Vec<u8>> {
    let images: Vec<Vec<f64>> = lists
        .iter()
        .map(|l| {
            let lo = l.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut counts = vec![0usize; bins];
            for &v in l {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                counts[((t * bins as f64) as usize).min(bins - 1)] += 1;
            }
            let top = counts.iter().copied().max().unwrap_or(1).max(1);
            let mut img = vec![0.0; bins * bins];
            for (b, &n) in counts.iter().enumerate() {
                let h = (n * bins).div_ceil(top);
                for r in bins - h..bins {
                    img[r * bins + b] = 1.0;
                }
            }
            img
        })
        .collect();
    png_grid(&images, bins, bins, images.len().max(1), false)
}
