//! Matrices held where the device computes, so that an operand used by
//! several operations crosses to the device once: a StarNet layer's
//! targets stay on a GPU for all the layer's epochs, and the latents and
//! reconstructions each epoch computes there are used there. On the CPU a
//! held matrix is its host vector; on a GPU it is row tiles
//! ([`crate::gpu::RowTiles`]) in the backend's precision.

use std::borrow::Cow;

use super::Ops;
use crate::error::Result;
use crate::gpu::RowTiles;
use crate::kernels::conv_unpool::ConvShape;
use crate::kernels::dense::Act;
use crate::kernels::kernel_product::Spec;

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

    /// Whether the rows are held on a GPU.
    pub fn is_on_device(&self) -> bool {
        matches!(self.store, Store::Device(_))
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

// The held operations on the rows' values, the results held by `ops`: what
// `Ops` does by default, and what a GPU does where its tiles do not line up.

pub(crate) fn dense_on_values<O: Ops + ?Sized>(
    ops: &O,
    a: &Held,
    b: &[f64],
    m: usize,
    bias: &[f64],
    act: Act,
) -> Result<Held> {
    let out = ops.dense(&a.values()?, a.cols(), b, m, bias, act, a.rows())?;
    ops.hold(out, m)
}

pub(crate) fn kernel_product_on_values<O: Ops + ?Sized>(
    ops: &O,
    a: &[f64],
    d: usize,
    m: &Held,
    spec: &Spec,
    len: usize,
) -> Result<Vec<f64>> {
    ops.kernel_product(a, a, d, &m.values()?, m.cols(), spec, len)
}

pub(crate) fn normal_eq_on_values<O: Ops + ?Sized>(
    ops: &O,
    h: &Held,
    z: &Held,
) -> Result<Vec<f64>> {
    ops.normal_eq(&h.values()?, h.cols(), &z.values()?, z.cols())
}

pub(crate) fn row_residual_on_values<O: Ops + ?Sized>(
    ops: &O,
    a: &Held,
    b: &Held,
) -> Result<Vec<f64>> {
    ops.row_residual(&a.values()?, &b.values()?, a.cols())
}

pub(crate) fn conv_forward_on_values<O: Ops + ?Sized>(
    ops: &O,
    (sh, kernels, bias): (&ConvShape, &[f64], &[f64]),
    h: &Held,
    act: Act,
) -> Result<Held> {
    let out = ops.conv_forward(sh, kernels, bias, &h.values()?, act, h.rows())?;
    ops.hold(out, sh.d_out())
}

pub(crate) fn conv_transpose_on_values<O: Ops + ?Sized>(
    ops: &O,
    sh: &ConvShape,
    kernels: &[f64],
    z: &Held,
) -> Result<Held> {
    let out = ops.conv_transpose(sh, kernels, &z.values()?, z.rows())?;
    ops.hold(out, sh.d_in())
}

pub(crate) fn conv_normal_eq_on_values<O: Ops + ?Sized>(
    ops: &O,
    sh: &ConvShape,
    h: &Held,
    zhat: &Held,
) -> Result<Vec<f64>> {
    ops.conv_normal_eq(sh, &h.values()?, &zhat.values()?)
}
