//! Elementwise leaky ReLU `a_α(v) = v (v ≥ 0), α v (v < 0)` and its inverse
//! (divide by α), in place: StarNet's Ẑ = a⁻¹(T) before each layer's solves.
//! Twin of `shaders/leaky_relu.wgsl`.

use super::dense::Act;
use crate::gpu::{Bind, Kernel};
use crate::real::Real;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "leaky_relu",
    source: include_str!("../../shaders/leaky_relu.wgsl"),
    deps: &[include_str!("../../shaders/dense.wgsl")],
    entry: "leaky_relu",
    binds: &[Bind::Uniform, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
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
