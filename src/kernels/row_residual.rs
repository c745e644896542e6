//! Per-row residuals of two n × d matrices: `out[i] = (Σ_j |a_ij − b_ij|,
//! Σ_j (a_ij − b_ij)²)`. Twin of `shaders/row_residual.wgsl`.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, Kernel, RowTiles};
use crate::real::Precision;
use crate::real::Real;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "row_residual",
    source: include_str!("../../shaders/row_residual.wgsl"),
    deps: &[],
    entry: "row_residual",
    binds: &[Bind::Uniform, Bind::Read, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `ResidualParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub d: u32,
    /// Padding.
    pub pad: [u32; 2],
}

/// Plain-loop f64 twin: (L1, squared L2) per row, interleaved.
pub fn reference(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    assert_eq!(a.len(), b.len());
    let n = a.len().checked_div(d).unwrap_or(0);
    let mut out = vec![0.0; 2 * n];
    for i in 0..n {
        for j in 0..d {
            let t = a[i * d + j] - b[i * d + j];
            out[2 * i] += t.abs();
            out[2 * i + 1] += t * t;
        }
    }
    out
}

/// CPU backend (any precision, sums in f64).
pub fn cpu<T: Real>(a: &[T], b: &[T], d: usize) -> Vec<f64> {
    assert_eq!(a.len(), b.len());
    if d == 0 {
        return vec![];
    }
    a.chunks(d)
        .zip(b.chunks(d))
        .flat_map(|(ra, rb)| {
            let (mut l1, mut l2) = (0.0, 0.0);
            for (&x, &y) in ra.iter().zip(rb) {
                let t = (x - y).to_f64();
                l1 += t.abs();
                l2 += t * t;
            }
            [l1, l2]
        })
        .collect()
}

/// (L1, squared L2) per row on the device, in row chunks that fit one
/// binding.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
) -> Result<Vec<f64>> {
    let n = a.len().checked_div(d).unwrap_or(0);
    let rows = ctx.fit_rows(prec, d);
    let mut out = Vec::with_capacity(2 * n);
    for r0 in (0..n).step_by(rows) {
        let r1 = (r0 + rows).min(n);
        let ab = ctx.upload_real(&a[r0 * d..r1 * d], prec)?;
        let bb = ctx.upload_real(&b[r0 * d..r1 * d], prec)?;
        let ob = ctx.alloc(2 * (r1 - r0), Elem::Real(prec))?;
        ctx.run_one(&dispatch(ctx, prec, (r1 - r0, d), &ab, &bb, &ob)?)?;
        out.extend(ob.read_real()?);
    }
    Ok(out)
}

/// [`gpu`] of two matrices held on the device in the same tiles, every
/// tile in one submit.
pub fn gpu_rows(ctx: &Arc<GpuContext>, a: &RowTiles, b: &RowTiles) -> Result<Vec<f64>> {
    let (prec, d) = (a.precision(), a.cols());
    assert_eq!(
        (a.rows(), d),
        (b.rows(), b.cols()),
        "A and B have one shape"
    );
    assert_eq!(a.tile_rows(), b.tile_rows(), "A and B share their tiles");
    let outs = (0..a.tiles().len())
        .map(|t| ctx.alloc(2 * a.tile(t).len(), Elem::Real(prec)))
        .collect::<Result<Vec<_>>>()?;
    let disps = outs
        .iter()
        .enumerate()
        .map(|(t, o)| {
            dispatch(
                ctx,
                prec,
                (a.tile(t).len(), d),
                &a.tiles()[t],
                &b.tiles()[t],
                o,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.run_all(&disps)?;
    let mut out = Vec::with_capacity(2 * a.rows());
    for o in &outs {
        out.extend(o.read_real()?);
    }
    Ok(out)
}

/// The dispatch of `out` = the residuals of `rows` rows of `a` against `b`.
fn dispatch(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    (rows, d): (usize, usize),
    a: &GpuBuffer,
    b: &GpuBuffer,
    out: &GpuBuffer,
) -> Result<Dispatch> {
    let params = ctx.uniform(&Params {
        rows: rows as u32,
        d: d as u32,
        pad: [0; 2],
    })?;
    ctx.prepare(
        &KERNEL,
        prec,
        &[(&params).into(), a.into(), b.into(), out.into()],
        rows as u64,
    )
}
