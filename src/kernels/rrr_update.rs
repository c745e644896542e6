//! The RRR update for dense variables, `z ← z + β (b − a)` with
//! `a = PA(z)`, `b = PB(2a − z)`, and the per-element error `(b − a)²`
//! whose sum over the batch gives RRR_err² · |K|. Twin of `shaders/rrr_update.wgsl`.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::real::Precision;
use crate::real::Real;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "rrr_update",
    source: include_str!("../../shaders/rrr_update.wgsl"),
    deps: &[],
    entry: "rrr_update",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `UpdateParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements.
    pub n: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// Plain loop (the f64 twin, and the CPU backend for any precision).
pub fn run<T: Real>(beta: T, pa: &[T], pb: &[T], z: &mut [T], err: &mut [T]) {
    for i in 0..z.len() {
        let d = pb[i] - pa[i];
        z[i] += beta * d;
        err[i] = d * d;
    }
}

/// Dense RRR update; returns (z, err).
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    beta: f64,
    pa: &[f64],
    pb: &[f64],
    z: &[f64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let params = ctx.uniform(&Params {
        n: z.len() as u32,
        pad: [0; 3],
    })?;
    let sc = ctx.upload_real(&[beta], prec)?;
    let (ab, bb, zb) = (
        ctx.upload_real(pa, prec)?,
        ctx.upload_real(pb, prec)?,
        ctx.upload_real(z, prec)?,
    );
    let err = ctx.alloc(z.len(), Elem::Real(prec))?;
    let d = ctx.prepare(
        &KERNEL,
        prec,
        &[
            (&params).into(),
            (&sc).into(),
            (&ab).into(),
            (&bb).into(),
            (&zb).into(),
            (&err).into(),
        ],
        z.len() as u64,
    )?;
    ctx.run_one(&d)?;
    Ok((zb.read_real()?, err.read_real()?))
}
