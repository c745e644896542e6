//! A matrix of rows held on the device between operations: buffers of at
//! most `tile_rows` rows each, so that every tile fits one storage binding.
//! The operands of a StarNet layer's solves (its targets, latents and
//! reconstructions) share one tile height, so each kernel runs tile by tile
//! with no copy, and the sums over items keep the block order of the host
//! path (see `crate::kernels::normal_eq`).

use std::ops::Range;
use std::sync::Arc;

use super::buffer::Elem;
use super::{GpuBuffer, GpuContext};
use crate::error::Result;
use crate::real::Precision;

/// Rows of `cols` values in device buffers of `tile_rows` rows (the last
/// one may be shorter).
#[derive(Debug)]
pub struct RowTiles {
    tiles: Vec<GpuBuffer>,
    rows: usize,
    cols: usize,
    tile_rows: usize,
    precision: Precision,
}

impl GpuContext {
    /// The most rows of `cols` values of `prec` one storage binding holds
    /// (at least one).
    pub fn fit_rows(&self, prec: Precision, cols: usize) -> usize {
        (self.max_binding_bytes() / prec.bytes() as u64 / cols.max(1) as u64).max(1) as usize
    }
}

impl RowTiles {
    /// Zero-filled tiles for `rows` rows of `cols` values.
    pub fn alloc(
        ctx: &Arc<GpuContext>,
        prec: Precision,
        rows: usize,
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self> {
        let tile_rows = tile_rows.max(1);
        let tiles = (0..rows.div_ceil(tile_rows))
            .map(|t| {
                let r = tile_rows.min(rows - t * tile_rows);
                ctx.alloc(r * cols, Elem::Real(prec))
            })
            .collect::<Result<_>>()?;
        Ok(RowTiles {
            tiles,
            rows,
            cols,
            tile_rows,
            precision: prec,
        })
    }

    /// Uploads `data` (rows of `cols` values, row-major).
    pub fn upload(
        ctx: &Arc<GpuContext>,
        prec: Precision,
        data: &[f64],
        cols: usize,
        tile_rows: usize,
    ) -> Result<Self> {
        let rows = data.len().checked_div(cols).unwrap_or(0);
        let held = Self::alloc(ctx, prec, rows, cols, tile_rows)?;
        for (t, buf) in held.tiles.iter().enumerate() {
            let r = held.tile(t);
            buf.write_real(&data[r.start * cols..r.end * cols]);
        }
        Ok(held)
    }

    /// Reads every row back, row-major.
    pub fn read(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for buf in &self.tiles {
            out.extend(buf.read_real()?);
        }
        Ok(out)
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows per tile (all but the last tile).
    pub fn tile_rows(&self) -> usize {
        self.tile_rows
    }

    /// Working precision of the values.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The tiles' buffers, in row order.
    pub fn tiles(&self) -> &[GpuBuffer] {
        &self.tiles
    }

    /// The rows of tile `t`.
    pub fn tile(&self, t: usize) -> Range<usize> {
        let start = t * self.tile_rows;
        start..(start + self.tile_rows).min(self.rows)
    }
}
