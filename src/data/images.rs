//! Unlabeled rows for the decoders (StarNet): IDX image files (raw or .gz;
//! pixels scaled to [0, 1]), the reference classifier format (labels
//! dropped), or a CSV table (every column a feature).

use std::path::Path;

use super::labeled::{self, LabeledFormat};
use super::matrix::{self, TableFormat};
use crate::error::{Error, Result};

/// Rows of equal width, with the image shape when known.
#[derive(Clone, Debug)]
pub struct Rows {
    /// Row-major values.
    pub x: Vec<f64>,
    /// Width.
    pub dim: usize,
    /// (height, width) of each row as an image, when known.
    pub shape: Option<(usize, usize)>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `n` rows.
    pub fn truncate(&mut self, n: usize) {
        self.x.truncate(n * self.dim);
    }
}

/// Loads rows from `path`. The image shape comes from an IDX header, else
/// from `shape`, else a square one when the width is a perfect square ≥ 16.
pub fn load_rows(path: &Path, shape: Option<(usize, usize)>) -> Result<Rows> {
    let bytes = labeled::read_bytes(path)?;
    let (x, dim, idx_shape) = if bytes.len() >= 4 && bytes[..3] == [0, 0, 8] && bytes[3] == 3 {
        let (dims, head) = labeled::idx_header(&bytes, path, 3)?;
        let x = bytes[head..].iter().map(|&v| v as f64 / 255.0).collect();
        (x, dims[1] * dims[2], Some((dims[1], dims[2])))
    } else {
        let text_head = &bytes[..bytes.len().min(4096)];
        if text_head.contains(&b',') {
            let m = matrix::load_table(path, TableFormat::Csv)?;
            (matrix::row_major(&m), m.ncols(), None)
        } else {
            let l = labeled::load(path, LabeledFormat::Lwl, None)?;
            (l.x, l.dim, None)
        }
    };
    if dim == 0 || x.is_empty() {
        return Err(Error::Input(format!("{}: no data rows", path.display())));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "{}: row {} has a NaN or infinite value",
            path.display(),
            i / dim + 1
        )));
    }
    let side = (dim as f64).sqrt().round() as usize;
    let shape = match (idx_shape, shape) {
        (Some(s), Some(want)) if s != want => {
            return Err(Error::Input(format!(
                "{}: images are {}x{}, not {}x{}",
                path.display(),
                s.0,
                s.1,
                want.0,
                want.1
            )));
        }
        (Some(s), _) => Some(s),
        (None, Some(s)) if s.0 * s.1 != dim => {
            return Err(Error::Input(format!(
                "{}: rows have {dim} values, not {}x{}",
                path.display(),
                s.0,
                s.1
            )));
        }
        (None, Some(s)) => Some(s),
        (None, None) if dim >= 16 && side * side == dim => Some((side, side)),
        _ => None,
    };
    Ok(Rows { x, dim, shape })
}
