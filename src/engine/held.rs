//! Matrices held where the device computes, so that an operand used by
//! several operations crosses to the device once: a StarNet layer's
//! targets stay on a GPU for all the layer's epochs, and the latents and
//! reconstructions each epoch computes there are used there. On the CPU a
//! held matrix is its host vector; on a GPU it is row tiles
//! ([`crate::gpu::RowTiles`]) in the backend's precision.

use std::borrow::Cow;

use crate::error::Result;
use crate::gpu::RowTiles;

/// Rows of `cols` values held by a [`super::Backend`] (see the module doc).
#[derive(Debug)]
pub struct Held {
    rows: usize,
    cols: usize,
    store: Store,
}

#[derive(Debug)]
pub(crate) enum Store {
    Host(Vec<f64>),
    Device(RowTiles),
}

impl Held {
    /// Rows held in host memory (`data.len()` a multiple of `cols`).
    pub(crate) fn host(data: Vec<f64>, cols: usize) -> Held {
        Held {
            rows: data.len().checked_div(cols).unwrap_or(0),
            cols,
            store: Store::Host(data),
        }
    }

    /// Rows held in device tiles.
    pub(crate) fn device(tiles: RowTiles) -> Held {
        Held {
            rows: tiles.rows(),
            cols: tiles.cols(),
            store: Store::Device(tiles),
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The device tiles, where the rows are held on a GPU.
    pub(crate) fn tiles(&self) -> Option<&RowTiles> {
        match &self.store {
            Store::Device(t) => Some(t),
            Store::Host(_) => None,
        }
    }

    /// The values, row-major: borrowed from host memory, or read back
    /// from the device.
    pub fn values(&self) -> Result<Cow<'_, [f64]>> {
        match &self.store {
            Store::Host(v) => Ok(Cow::Borrowed(v)),
            Store::Device(t) => t.read().map(Cow::Owned),
        }
    }

    /// The values, row-major, moved out of host memory or read back from
    /// the device.
    pub fn into_values(self) -> Result<Vec<f64>> {
        match self.store {
            Store::Host(v) => Ok(v),
            Store::Device(t) => t.read(),
        }
    }
}
