//! The Laplacian form of a kernel product, in place: with P = [K·X | K·1]
//! (n rows of w = r + 1, from [`super::kernel_product`] with M = [X | 1])
//! and M itself, P's first r columns become (Diag(K1) − K)X:
//! `P[k][j] ← P[k][r]·M[k][j] − P[k][j]` for j < r; column r keeps K1.
//! The ISM's Φ in Z's basis is Xᵀ times this (X = A, K = Ψ). Twin of
//! `shaders/laplacian.wgsl`.

use crate::error::Result;
use crate::gpu::{Bind, Dispatch, GpuBuffer, GpuContext, Kernel};
use crate::real::{Precision, Real};
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "laplacian",
    source: include_str!("../../shaders/laplacian.wgsl"),
    deps: &[],
    entry: "laplacian",
    binds: &[Bind::Uniform, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `LaplacianParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows.
    pub rows: u32,
    /// Values per row, r + 1.
    pub w: u32,
    /// Padding.
    pub pad: [u32; 2],
}

/// Plain-loop f64 twin: the form of `p` (rows of r + 1) with `m` (the same
/// shape).
pub fn reference(p: &[f64], m: &[f64], r: usize) -> Vec<f64> {
    let w = r + 1;
    assert_eq!(p.len(), m.len(), "P and M have one shape");
    let mut out = p.to_vec();
    for k in 0..p.len() / w {
        for j in 0..r {
            out[k * w + j] = p[k * w + r] * m[k * w + j] - p[k * w + j];
        }
    }
    out
}

/// CPU backend, in place.
pub fn cpu<T: Real>(p: &mut [T], m: &[T], r: usize) {
    let w = r + 1;
    for (pr, mr) in p.chunks_exact_mut(w).zip(m.chunks_exact(w)) {
        let s = pr[r];
        pr[..r]
            .iter_mut()
            .zip(&mr[..r])
            .for_each(|(v, &mv)| *v = s * mv - *v);
    }
}

/// The dispatch of the form of `rows` rows of `p` (r + 1 values each) with
/// `m`, both on the device; with its uniform.
pub(crate) fn prepare(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    m: &GpuBuffer,
    p: &GpuBuffer,
    rows: usize,
    r: usize,
) -> Result<(Dispatch, GpuBuffer)> {
    let params = ctx.uniform(&Params {
        rows: rows as u32,
        w: (r + 1) as u32,
        pad: [0; 2],
    })?;
    let disp = ctx.prepare(
        &KERNEL,
        prec,
        &[(&params).into(), m.into(), p.into()],
        (rows * r) as u64,
    )?;
    Ok((disp, params))
}

/// The form on the GPU, from host values (the twin tests).
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    p: &[f64],
    m: &[f64],
    r: usize,
) -> Result<Vec<f64>> {
    assert_eq!(p.len(), m.len(), "P and M have one shape");
    let rows = p.len() / (r + 1);
    if rows * r == 0 {
        return Ok(p.to_vec());
    }
    let (mb, pb) = (ctx.upload_real(m, prec)?, ctx.upload_real(p, prec)?);
    let (disp, _params) = prepare(ctx, prec, &mb, &pb, rows, r)?;
    ctx.run_one(&disp)?;
    pb.read_real()
}
