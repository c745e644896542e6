//! Unlabeled rows for the decoders (StarNet, the autoencoder): IDX image
//! files (pixels scaled to [0, 1]), the reference classifier format (labels
//! dropped), or a CSV table (every column a feature); any of them plain,
//! `.gz` or the one file of a `.zip` (see [`read_input`]).

use std::path::Path;

use super::matrix::{self, TableFormat};
use super::{Limits, labeled, read_input};
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
        self.x.truncate(n.saturating_mul(self.dim));
    }
}

/// Loads rows from `path`. The image shape comes from an IDX header, else
/// from `shape`, else a square one when the width is a perfect square ≥ 16.
pub fn load_rows(path: &Path, shape: Option<(usize, usize)>, limits: &Limits) -> Result<Rows> {
    parse_rows(read_input(path, limits)?, path, shape, limits)
}

/// [`load_rows`] of the bytes of `path` as [`read_input`] gives them.
pub fn parse_rows(
    bytes: Vec<u8>,
    path: &Path,
    shape: Option<(usize, usize)>,
    limits: &Limits,
) -> Result<Rows> {
    let (x, dim, idx_shape) = if bytes.len() >= 4 && bytes[..3] == [0, 0, 8] && bytes[3] == 3 {
        let (dims, head) = labeled::idx_header(&bytes, path, 3)?;
        let x = bytes[head..].iter().map(|&v| v as f64 / 255.0).collect();
        // Within usize when there are rows: the body holds them all.
        let dim = dims[1].saturating_mul(dims[2]);
        (x, dim, Some((dims[1], dims[2])))
    } else {
        let csv = bytes[..bytes.len().min(4096)].contains(&b',');
        let text = matrix::text(bytes, path)?;
        if csv {
            let m = matrix::parse_table(&text, path, TableFormat::Csv, limits)?;
            (matrix::row_major(&m), m.ncols(), None)
        } else {
            let l = labeled::parse_lwl(&text, path, limits)?;
            (l.x, l.dim, None)
        }
    };
    // (Every parser above has refused values that are NaN, infinite or too large.)
    if dim == 0 || x.is_empty() {
        return Err(Error::Input(format!("{}: no data rows", path.display())));
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
        (None, Some(s)) if s.0.checked_mul(s.1) != Some(dim) => {
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
