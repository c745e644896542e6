//! Normal-equation build for a least-squares layer `Z ≈ H Wᵀ + 1 cᵀ`:
//!
//! ```text
//! X = [H, 1] (N × (p+1)),  C = Xᵀ [X, Z] = [ XᵀX | XᵀZ ]  ((p+1) × (p+1+q))
//! [W c]ᵀ solves (XᵀX) [W c]ᵀ = XᵀZ
//! ```
//!
//! Sums over items are computed as partial sums over item blocks and added
//! in a fixed order (so results do not depend on the thread count); a later
//! multi-device or MPI run would allreduce the same partials. Twin of
//! `shaders/normal_eq.wgsl`.

use super::dense::gemm_acc;
use super::par::parallel_enough;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Dispatch, GpuBuffer, Kernel, RowTiles};
use crate::real::Precision;
use crate::real::Real;
use rayon::prelude::*;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "normal_eq",
    source: include_str!("../../shaders/normal_eq.wgsl"),
    deps: &[],
    entry: "normal_eq",
    binds: &[Bind::Uniform, Bind::Read, Bind::Read, Bind::ReadWrite],
    workgroup: 256,
    lanes: 1,
};

/// Output rows and columns per GPU workgroup.
pub const GPU_TILE: usize = 64;

/// Uniform parameters (matches `NormalParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items in this block.
    pub items: u32,
    /// Columns of H.
    pub p: u32,
    /// Columns of Z.
    pub q: u32,
    /// Padding.
    pub pad: u32,
}

/// Items, checking the shapes.
pub fn shape<T>(h: &[T], p: usize, z: &[T], q: usize) -> usize {
    let n = h
        .len()
        .checked_div(p)
        .or(z.len().checked_div(q))
        .unwrap_or(0);
    assert_eq!(h.len(), n * p, "H is N × p");
    assert_eq!(z.len(), n * q, "Z is N × q");
    n
}

/// Plain-loop f64 twin: C, (p+1) × (p+1+q) row-major.
pub fn reference(h: &[f64], p: usize, z: &[f64], q: usize) -> Vec<f64> {
    let n = shape(h, p, z, q);
    let cols = p + 1 + q;
    let mut c = vec![0.0; (p + 1) * cols];
    for i in 0..n {
        let x = |a: usize| if a < p { h[i * p + a] } else { 1.0 };
        let y = |b: usize| {
            if b <= p { x(b) } else { z[i * q + b - p - 1] }
        };
        for a in 0..=p {
            for b in 0..cols {
                c[a * cols + b] += x(a) * y(b);
            }
        }
    }
    c
}

/// Items per CPU block.
const BLOCK: usize = 512;
/// Fixed number of partial sums (independent of the thread count).
pub const PARTIALS: usize = 8;

/// CPU backend: [`PARTIALS`] contiguous runs of items, each summing its
/// blocks' GEMMs Xᵀ[X, Z]; the runs are added in order, in f64.
pub fn cpu<T: Real>(h: &[T], p: usize, z: &[T], q: usize) -> Vec<f64> {
    let n = shape(h, p, z, q);
    let cols = p + 1 + q;
    let per = n.div_ceil(PARTIALS).max(1);
    let run = |start: usize| -> Vec<T> {
        let end = (start + per).min(n);
        let mut c = vec![T::ZERO; (p + 1) * cols];
        let mut y = vec![T::ZERO; BLOCK * cols];
        for b0 in (start..end).step_by(BLOCK) {
            let items = BLOCK.min(end - b0);
            for li in 0..items {
                let i = b0 + li;
                let row = &mut y[li * cols..(li + 1) * cols];
                row[..p].copy_from_slice(&h[i * p..(i + 1) * p]);
                row[p] = T::ONE;
                row[p + 1..].copy_from_slice(&z[i * q..(i + 1) * q]);
            }
            // Xᵀ is the first p+1 columns of Y, read transposed.
            gemm_acc(p + 1, items, cols, &y, 1, cols, &y, cols, &mut c, cols);
        }
        c
    };
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    let partials: Vec<Vec<T>> = if parallel_enough((n * (p + 1) * cols) >> 4) {
        starts.par_iter().map(|&s| run(s)).collect()
    } else {
        starts.iter().map(|&s| run(s)).collect()
    };
    let mut out = vec![0.0; (p + 1) * cols];
    for part in partials {
        out.iter_mut().zip(part).for_each(|(o, v)| *o += v.to_f64());
    }
    out
}

/// The normal equations on the device in blocks of at most `block` items,
/// each block's partial sums read back and added on the host in order.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    h: &[f64],
    p: usize,
    z: &[f64],
    q: usize,
    block: usize,
) -> Result<Vec<f64>> {
    let n = shape(h, p, z, q);
    let cols = p + 1 + q;
    let mut total = vec![0.0; (p + 1) * cols];
    if n == 0 {
        return Ok(total);
    }
    let block = gpu_block(ctx, prec, p, q, block).min(n);
    let hb = ctx.alloc((block * p).max(1), Elem::Real(prec))?;
    let zb = ctx.alloc((block * q).max(1), Elem::Real(prec))?;
    let cb = ctx.alloc((p + 1) * cols, Elem::Real(prec))?;
    let mut i0 = 0;
    while i0 < n {
        let items = block.min(n - i0);
        if p > 0 {
            hb.write_real_at(0, &h[i0 * p..(i0 + items) * p]);
        }
        if q > 0 {
            zb.write_real_at(0, &z[i0 * q..(i0 + items) * q]);
        }
        ctx.run_one(&dispatch(ctx, prec, (items, p, q), &hb, &zb, &cb)?)?;
        let part = cb.read_real()?;
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
        i0 += items;
    }
    Ok(total)
}

/// The items per block [`gpu`] uses for `block` requested: the request,
/// cut to what one binding of H or Z holds.
pub fn gpu_block(ctx: &GpuContext, prec: Precision, p: usize, q: usize, block: usize) -> usize {
    block.clamp(1, ctx.fit_rows(prec, p.max(q)))
}

/// The dispatch of one block's partial sums `c = [h,1]ᵀ[h,1,z]`.
fn dispatch(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    (items, p, q): (usize, usize, usize),
    h: &GpuBuffer,
    z: &GpuBuffer,
    c: &GpuBuffer,
) -> Result<Dispatch> {
    let params = ctx.uniform(&Params {
        items: items as u32,
        p: p as u32,
        q: q as u32,
        pad: 0,
    })?;
    let groups = (p + 1).div_ceil(GPU_TILE) * (p + 1 + q).div_ceil(GPU_TILE);
    ctx.prepare(
        &KERNEL,
        prec,
        &[(&params).into(), h.into(), z.into(), c.into()],
        (groups * KERNEL.workgroup as usize) as u64,
    )
}

/// [`gpu`] over rows held on the device, one block per tile (H and Z in
/// tiles of the same height): every block's partial sums in one submit,
/// added on the host in block order, so the result is [`gpu`]'s with
/// `block` = the tile height.
pub fn gpu_rows(ctx: &Arc<GpuContext>, h: &RowTiles, z: &RowTiles) -> Result<Vec<f64>> {
    let (prec, p, q) = (h.precision(), h.cols(), z.cols());
    assert_eq!(h.rows(), z.rows(), "H and Z have the same items");
    assert_eq!(h.tile_rows(), z.tile_rows(), "H and Z share their tiles");
    let cols = p + 1 + q;
    let parts = (0..h.tiles().len())
        .map(|_| ctx.alloc((p + 1) * cols, Elem::Real(prec)))
        .collect::<Result<Vec<_>>>()?;
    let disps = parts
        .iter()
        .enumerate()
        .map(|(t, c)| {
            let items = (h.tile(t).len(), p, q);
            dispatch(ctx, prec, items, &h.tiles()[t], &z.tiles()[t], c)
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.run_all(&disps)?;
    sum_parts(&parts, (p + 1) * cols)
}

/// The sum of blocks' partial sums of `size` values, read back and added
/// in f64 in block order.
pub fn sum_parts(parts: &[GpuBuffer], size: usize) -> Result<Vec<f64>> {
    let mut total = vec![0.0; size];
    for c in parts {
        let part = c.read_real()?;
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
    }
    Ok(total)
}
