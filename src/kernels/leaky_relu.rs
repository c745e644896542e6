//! Elementwise leaky ReLU `a_α(v) = v (v ≥ 0), α v (v < 0)` and its inverse
//! (divide by α), in place: StarNet's Ẑ = a⁻¹(T) before each layer's solves.
//! Twin of `shaders/leaky_relu.wgsl`.

use super::dense::Act;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::{Bind, Kernel};
use crate::real::Precision;
use crate::real::Real;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "leaky_relu",
    source: include_str!("../../shaders/leaky_relu.wgsl"),
    deps: &[include_str!("../../shaders/dense.wgsl")],
    entry: "leaky_relu",
    binds: &[Bind::Uniform, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `LeakyParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Elements.
    pub len: u32,
    /// 1 = the inverse.
    pub inverse: u32,
    /// Padding.
    pub pad: [u32; 2],
}

/// Plain-loop f64 twin.
pub fn reference(x: &[f64], alpha: f64, inverse: bool) -> Vec<f64> {
    x.iter()
        .map(|&v| {
            if v >= 0.0 {
                v
            } else if inverse {
                v / alpha
            } else {
                v * alpha
            }
        })
        .collect()
}

/// CPU backend, in place.
pub fn cpu<T: Real>(x: &mut [T], alpha: f64, inverse: bool) {
    let act = if inverse {
        Act::InvLeaky(alpha)
    } else {
        Act::Leaky(alpha)
    };
    x.iter_mut().for_each(|v| *v = act.apply(*v));
}

/// Leaky ReLU (or its inverse) of every element, in chunks that fit one
/// binding.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    x: &[f64],
    alpha: f64,
    inverse: bool,
) -> Result<Vec<f64>> {
    let chunk = ctx.fit_rows(prec, 1);
    let mut out = Vec::with_capacity(x.len());
    for part in x.chunks(chunk) {
        out.extend(gpu_chunk(ctx, prec, part, alpha, inverse)?);
    }
    Ok(out)
}

fn gpu_chunk(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    x: &[f64],
    alpha: f64,
    inverse: bool,
) -> Result<Vec<f64>> {
    if x.is_empty() {
        return Ok(vec![]);
    }
    let scal = ctx.upload_real(&[alpha], prec)?;
    let xb = ctx.upload_real(x, prec)?;
    let params = ctx.uniform(&Params {
        len: x.len() as u32,
        inverse: inverse as u32,
        pad: [0; 2],
    })?;
    let disp = ctx.prepare(
        &KERNEL,
        prec,
        &[(&params).into(), (&scal).into(), (&xb).into()],
        x.len() as u64,
    )?;
    ctx.run_one(&disp)?;
    xb.read_real()
}
