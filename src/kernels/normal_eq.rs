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
use crate::gpu::{Bind, Kernel};
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

/// Normal equations `C = [H,1]ᵀ[H,1,Z]` ((p+1) × (p+1+q), see
/// the module doc) over item blocks of at most `block` items; each block's
/// partial C is read back and added in f64 on the host in block order.
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
    let widest = p.max(q).max(1) as u64;
    let fit = (ctx.max_binding_bytes() / prec.bytes() as u64 / widest).max(1) as usize;
    let block = block.clamp(1, fit).min(n);
    let hb = ctx.alloc((block * p).max(1), Elem::Real(prec))?;
    let zb = ctx.alloc((block * q).max(1), Elem::Real(prec))?;
    let cb = ctx.alloc((p + 1) * cols, Elem::Real(prec))?;
    let groups = (p + 1).div_ceil(GPU_TILE) * cols.div_ceil(GPU_TILE);
    let mut i0 = 0;
    while i0 < n {
        let items = block.min(n - i0);
        if p > 0 {
            hb.write_real_at(0, &h[i0 * p..(i0 + items) * p]);
        }
        if q > 0 {
            zb.write_real_at(0, &z[i0 * q..(i0 + items) * q]);
        }
        let params = ctx.uniform(&Params {
            items: items as u32,
            p: p as u32,
            q: q as u32,
            pad: 0,
        })?;
        let disp = ctx.prepare(
            &KERNEL,
            prec,
            &[(&params).into(), (&hb).into(), (&zb).into(), (&cb).into()],
            (groups * KERNEL.workgroup as usize) as u64,
        )?;
        ctx.run_one(&disp)?;
        let part = cb.read_real()?;
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
        i0 += items;
    }
    Ok(total)
}
