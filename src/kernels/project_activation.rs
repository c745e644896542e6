//! Activation and class projections of `(x, y, b)` with unit weights
//! (SPEC 2.2 and 2.3). With `g = outdeg` for y and b, a hidden node's metric
//! is isotropic and these are plain Euclidean projections onto
//!
//! - ReLU: the graph `x = max(0, y − b)` — two half-lines;
//! - class margin: `y − b ≥ Δ` for the correct class, `y − b ≤ 0` otherwise
//!   (y and b move by equal and opposite amounts);
//! - zigmoid (half-width m): `x = 0 | (z+m)/2m | 1` for `z = y − b`;
//! - gapped step: `x ∈ {0, 1}` with `|y − b| ≥ m`;
//! - fixed value (data/code nodes with x fixed): `act(y − b) = x`.
//!
//! Ties break as the reference C code (see ../shared/golden/README.md).
//! Twin of `shaders/project_activation.wgsl`.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::{Bind, Kernel};
use crate::real::Precision;
use crate::real::Real;
use std::sync::Arc;

/// ReLU hidden node.
pub const ACT_RELU: u32 = 0;
/// Class node, correct class of the item.
pub const ACT_CLASS_CORRECT: u32 = 1;
/// Class node, other class.
pub const ACT_CLASS_WRONG: u32 = 2;
/// Zigmoid node.
pub const ACT_ZIGMOID: u32 = 3;
/// Gapped-step node.
pub const ACT_STEP: u32 = 4;
/// Node with x fixed (only y, b move).
pub const ACT_FIXED: u32 = 5;

/// The WGSL kernel (in place over arrays of x, y, b with a kind and margin each).
pub const KERNEL: Kernel = Kernel {
    name: "project_activation",
    source: include_str!("../../shaders/project_activation.wgsl"),
    deps: &[],
    entry: "project_activation",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

fn two<T: Real>() -> T {
    T::from_f64(2.0)
}

/// Projection onto the ReLU graph; returns (x', y', b').
// `!(y < b)` mirrors the reference C code's branch exactly, NaN included.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline(always)]
pub fn relu<T: Real>(x: T, y: T, b: T) -> (T, T, T) {
    let half = T::from_f64(0.5);
    let (mut c1, mut d1) = ((T::ZERO, y, b), x * x);
    if !(y < b) {
        let s = (y - b) * half;
        c1 = (T::ZERO, y - s, y - s);
        d1 = x * x + two::<T>() * s * s;
    }
    let s2 = (x - y + b) / T::from_f64(3.0);
    let mut c2 = (x - s2, y + s2, b - s2);
    let mut d2 = T::from_f64(3.0) * s2 * s2;
    if x - s2 < T::ZERO {
        let s3 = (y - b) * half;
        c2 = (T::ZERO, y - s3, y - s3);
        d2 = x * x + two::<T>() * s3 * s3;
    }
    if d1 < d2 { c1 } else { c2 }
}

/// Class-margin projection; returns (y', b').
pub fn class<T: Real>(y: T, b: T, correct: bool, margin: T) -> (T, T) {
    let z = y - b;
    let half = T::from_f64(0.5);
    if correct {
        if z < margin {
            let s = (z - margin) * half;
            return (y - s, b + s);
        }
    } else if z > T::ZERO {
        let s = z * half;
        return (y - s, b + s);
    }
    (y, b)
}

fn act_zero<T: Real>(x: T, y: T, b: T, m: T) -> ((T, T, T), T) {
    let s = (y - b + m) * T::from_f64(0.5);
    if s < T::ZERO {
        ((T::ZERO, y, b), x * x)
    } else {
        ((T::ZERO, y - s, b + s), x * x + two::<T>() * s * s)
    }
}

fn act_one<T: Real>(x: T, y: T, b: T, m: T) -> ((T, T, T), T) {
    let s = (y - b - m) * T::from_f64(0.5);
    let dx = T::ONE - x;
    if s > T::ZERO {
        ((T::ONE, y, b), dx * dx)
    } else {
        ((T::ONE, y - s, b + s), dx * dx + two::<T>() * s * s)
    }
}

/// Zigmoid projection (m = half-width of the ramp); returns (x', y', b').
pub fn zigmoid<T: Real>(x: T, y: T, b: T, m: T) -> (T, T, T) {
    let (zero, d0) = act_zero(x, y, b, m);
    let (one, d1) = act_one(x, y, b, m);
    let k = T::ONE + T::from_f64(0.5) / (m * m);
    let s = (x - (y - b) / (two::<T>() * m) - T::from_f64(0.5)) / k;
    let xr = x - s;
    let mut dz = k * s * s;
    if xr < T::ZERO || xr > T::ONE {
        dz = T::from_f64(1e10);
    }
    let ramp = (xr, y + s / (two::<T>() * m), b - s / (two::<T>() * m));
    if d0 < d1 {
        if dz < d0 { ramp } else { zero }
    } else if dz < d1 {
        ramp
    } else {
        one
    }
}

/// Gapped-step projection; returns (x', y', b').
pub fn step<T: Real>(x: T, y: T, b: T, m: T) -> (T, T, T) {
    let (zero, d0) = act_zero(x, y, b, m);
    let (one, d1) = act_one(x, y, b, m);
    if d0 < d1 { zero } else { one }
}

/// Fixed-value projection; returns (y', b').
pub fn fixed<T: Real>(x_fixed: T, y: T, b: T, m: T) -> (T, T) {
    let z = y - b;
    let half = T::from_f64(0.5);
    if x_fixed == T::ZERO {
        let s = (z + m) * half;
        return if s > T::ZERO { (y - s, b + s) } else { (y, b) };
    }
    if x_fixed == T::ONE {
        let s = (z - m) * half;
        return if s < T::ZERO { (y - s, b + s) } else { (y, b) };
    }
    let s = (z + m * (T::ONE - two::<T>() * x_fixed)) * half;
    (y - s, b + s)
}

/// Dispatch on an ACT_* kind (`m` = class margin for class kinds); returns (x', y', b').
#[inline]
pub fn project<T: Real>(kind: u32, x: T, y: T, b: T, m: T) -> (T, T, T) {
    match kind {
        ACT_RELU => relu(x, y, b),
        ACT_CLASS_CORRECT | ACT_CLASS_WRONG => {
            let (y, b) = class(y, b, kind == ACT_CLASS_CORRECT, m);
            (x, y, b)
        }
        ACT_ZIGMOID => zigmoid(x, y, b, m),
        ACT_STEP => step(x, y, b, m),
        ACT_FIXED => {
            let (y, b) = fixed(x, y, b, m);
            (x, y, b)
        }
        _ => (x, y, b),
    }
}

/// Plain-loop f64 twin of the kernel: projects every element in place.
pub fn reference(kinds: &[u32], margins: &[f64], x: &mut [f64], y: &mut [f64], b: &mut [f64]) {
    for i in 0..kinds.len() {
        let (xo, yo, bo) = project(kinds[i], x[i], y[i], b[i], margins[i]);
        x[i] = xo;
        y[i] = yo;
        b[i] = bo;
    }
}

/// Element-wise activation/class projection, in place.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kinds: &[u32],
    margins: &[f64],
    x: &mut [f64],
    y: &mut [f64],
    b: &mut [f64],
) -> Result<()> {
    let params = ctx.uniform(&super::rrr_update::Params {
        n: kinds.len() as u32,
        pad: [0; 3],
    })?;
    let kb = ctx.upload_u32(kinds)?;
    let mb = ctx.upload_real(margins, prec)?;
    let xb = ctx.upload_real(x, prec)?;
    let yb = ctx.upload_real(y, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let d = ctx.prepare(
        &KERNEL,
        prec,
        &[
            (&params).into(),
            (&kb).into(),
            (&mb).into(),
            (&xb).into(),
            (&yb).into(),
            (&bb).into(),
        ],
        kinds.len() as u64,
    )?;
    ctx.run_one(&d)?;
    x.copy_from_slice(&xb.read_real()?);
    y.copy_from_slice(&yb.read_real()?);
    b.copy_from_slice(&bb.read_real()?);
    Ok(())
}
