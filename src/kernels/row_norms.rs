//! Squared norms of rows into a buffer at an offset:
//! `out[off + i] = Σ_j x[i][j]²` (x row-major, d values per row): the
//! norms a Gaussian kernel product takes for rows computed on the device
//! (the W\* solver's ZW). Twin of `shaders/row_norms.wgsl`.

use crate::error::Result;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, GpuContext, Kernel};
use crate::real::{Precision, Real};
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "row_norms",
    source: include_str!("../../shaders/row_norms.wgsl"),
    deps: &[],
    entry: "row_norms",
    binds: &[Bind::Uniform, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `NormParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows.
    pub rows: u32,
    /// Values per row.
    pub d: u32,
    /// Where the first norm goes in the output.
    pub off: u32,
    /// Padding.
    pub pad: u32,
}

/// Plain-loop f64 twin.
pub fn reference(x: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d.max(1))
        .map(|row| row.iter().map(|v| v * v).sum())
        .collect()
}

/// CPU version, in the working precision.
pub fn cpu<T: Real>(x: &[T], d: usize) -> Vec<T> {
    x.chunks(d.max(1))
        .map(|row| row.iter().fold(T::ZERO, |s, &v| s + v * v))
        .collect()
}

/// The dispatch of the norms of `rows` rows of `x` (d values each) into
/// `out` from `off` on; with its uniform.
pub(crate) fn prepare(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    x: &GpuBuffer,
    (rows, d): (usize, usize),
    out: &GpuBuffer,
    off: usize,
) -> Result<(Dispatch, GpuBuffer)> {
    let params = ctx.uniform(&Params {
        rows: rows as u32,
        d: d as u32,
        off: off as u32,
        pad: 0,
    })?;
    let disp = ctx.prepare(
        &KERNEL,
        prec,
        &[(&params).into(), x.into(), out.into()],
        rows as u64,
    )?;
    Ok((disp, params))
}

/// The norms on the GPU, from host values (the twin tests).
pub fn gpu(ctx: &Arc<GpuContext>, prec: Precision, x: &[f64], d: usize) -> Result<Vec<f64>> {
    let rows = x.len().checked_div(d).unwrap_or(0);
    if rows == 0 {
        return Ok(vec![]);
    }
    let xb = ctx.upload_real(x, prec)?;
    let out = ctx.alloc(rows, Elem::Real(prec))?;
    let (disp, _params) = prepare(ctx, prec, &xb, (rows, d), &out, 0)?;
    ctx.run_one(&disp)?;
    out.read_real()
}
