//! Per-row residuals of two n × d matrices: `out[i] = (Σ_j |a_ij − b_ij|,
//! Σ_j (a_ij − b_ij)²)`. Twin of `shaders/row_residual.wgsl`.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
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

/// Per-row (L1, squared L2) residuals of two n × d matrices, in row
/// chunks that fit one binding.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
) -> Result<Vec<f64>> {
    let n = a.len().checked_div(d).unwrap_or(0);
    let rows = (ctx.max_binding_bytes() / prec.bytes() as u64 / d.max(1) as u64).max(1) as usize;
    let mut out = Vec::with_capacity(2 * n);
    for r0 in (0..n).step_by(rows.max(1)) {
        let r1 = (r0 + rows).min(n);
        out.extend(gpu_chunk(
            ctx,
            prec,
            &a[r0 * d..r1 * d],
            &b[r0 * d..r1 * d],
            d,
        )?);
    }
    Ok(out)
}

fn gpu_chunk(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
) -> Result<Vec<f64>> {
    let n = a.len() / d;
    if n == 0 {
        return Ok(vec![]);
    }
    let ab = ctx.upload_real(a, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let ob = ctx.alloc(2 * n, Elem::Real(prec))?;
    let params = ctx.uniform(&Params {
        rows: n as u32,
        d: d as u32,
        pad: [0; 2],
    })?;
    let disp = ctx.prepare(
        &KERNEL,
        prec,
        &[(&params).into(), (&ab).into(), (&bb).into(), (&ob).into()],
        n as u64,
    )?;
    ctx.run_one(&disp)?;
    ob.read_real()
}
