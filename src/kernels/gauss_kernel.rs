//! Gaussian kernel matrix `K[i][j] = exp(−‖a_i − b_j‖² / (2σ²))` between
//! the rows of A (n × d) and B (m × d), row-major, optionally with a zero
//! diagonal (the ISM solver's K). The GPU computes it in row tiles so that
//! an n × n matrix with n = 10⁴ (400 MB in f32) never needs one binding that
//! large. Twin of `shaders/gauss_kernel.wgsl`.

use super::par::{SimdLevel, parallel_enough, simd_dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::real::{Precision, Real};
use rayon::prelude::*;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "gauss_kernel",
    source: include_str!("../../shaders/gauss_kernel.wgsl"),
    deps: &[],
    entry: "gauss_kernel",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

/// Uniform parameters (matches `GaussParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of this tile.
    pub rows: u32,
    /// First row of A in this tile.
    pub row0: u32,
    /// Rows of B (columns of K).
    pub m: u32,
    /// Features d.
    pub d: u32,
    /// 1 = K[i][i] = 0.
    pub zero_diag: u32,
    /// Padding.
    pub pad: [u32; 3],
}

simd_dispatch! {
    /// [`kernel_row`] for a SIMD level.
    pub(crate) fn kernel_row_at<T>(ai: &[T], bt: &[T], m: usize, g: f64, out: &mut [T], j0: usize) -> () = kernel_row
}

/// `out[j − j0] = exp(−g ‖ai − b_j‖²)` for j ≥ j0, from B transposed
/// (`bt[c][j]`, d × m) so that both passes run along j and vectorize.
#[inline(always)]
fn kernel_row<T: Real>(ai: &[T], bt: &[T], m: usize, g: f64, out: &mut [T], j0: usize) {
    out.fill(T::ZERO);
    for (c, &a) in ai.iter().enumerate() {
        let col = &bt[c * m + j0..(c + 1) * m];
        for (o, &b) in out.iter_mut().zip(col) {
            let t = a - b;
            *o += t * t;
        }
    }
    match T::PRECISION {
        Precision::F64 => {
            for o in out.iter_mut() {
                *o = T::from_f64(exp_neg(o.to_f64() * g));
            }
        }
        Precision::F32 => {
            // f32 all the way: twice the lanes and half the polynomial.
            let g = g as f32;
            for o in bytemuck::cast_slice_mut::<T, f32>(out) {
                *o = exp_neg_f32(*o * g);
            }
        }
    }
}

/// Plain-loop f64 twin.
pub fn reference(a: &[f64], b: &[f64], d: usize, sigma: f64, zero_diag: bool) -> Vec<f64> {
    let (n, m) = rows(a, b, d);
    let g = 1.0 / (2.0 * sigma * sigma);
    let mut k = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            let mut s = 0.0;
            for c in 0..d {
                let t = a[i * d + c] - b[j * d + c];
                s += t * t;
            }
            k[i * m + j] = if zero_diag && i == j {
                0.0
            } else {
                (-s * g).exp()
            };
        }
    }
    k
}

fn rows<T>(a: &[T], b: &[T], d: usize) -> (usize, usize) {
    if d == 0 {
        return (0, 0);
    }
    assert!(
        a.len().is_multiple_of(d) && b.len().is_multiple_of(d),
        "rows of length d"
    );
    (a.len() / d, b.len() / d)
}

/// CPU backend: rows in parallel, `exp` of the squared distance.
pub fn cpu<T: Real>(a: &[T], b: &[T], d: usize, sigma: T, zero_diag: bool, out: &mut [T]) {
    let (n, m) = rows(a, b, d);
    assert_eq!(out.len(), n * m);
    if n == 0 || m == 0 {
        return;
    }
    let g = (T::ONE / (T::from_f64(2.0) * sigma * sigma)).to_f64();
    // K(A, A) is symmetric: each row fills its upper part, then it is mirrored.
    let same = std::ptr::eq(a, b);
    let level = SimdLevel::current();
    let mut bt = vec![T::ZERO; m * d];
    for j in 0..m {
        for c in 0..d {
            bt[c * m + j] = b[j * d + c];
        }
    }
    let row = |(i, ki): (usize, &mut [T])| {
        let j0 = if same { i } else { 0 };
        kernel_row_at(level, &a[i * d..(i + 1) * d], &bt, m, g, &mut ki[j0..], j0);
        if zero_diag && i < m {
            ki[i] = T::ZERO;
        }
    };
    // Small matrices (the HSIC sets) run faster on one thread.
    if parallel_enough((n * m * (d + 8)) >> 6) {
        out.par_chunks_mut(m).enumerate().for_each(row);
    } else {
        out.chunks_mut(m).enumerate().for_each(row);
    }
    if same {
        // Mirror the upper triangle in 32 × 32 tiles (a column walk would
        // miss the cache on every element).
        const B: usize = 32;
        for i0 in (0..n).step_by(B) {
            for j0 in (0..=i0).step_by(B) {
                for i in i0..(i0 + B).min(n) {
                    for j in j0..(j0 + B).min(i) {
                        out[i * m + j] = out[j * m + i];
                    }
                }
            }
        }
    }
}

/// [`exp_neg`] in f32 (0 beyond 87): Cody–Waite reduction with an f32
/// split of ln 2 and a degree-7 Taylor polynomial (truncation ≤ 6e-9,
/// below f32's half ulp).
#[inline(always)]
pub fn exp_neg_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer held in the low mantissa bits:
    // integer arithmetic on the bits vectorizes, where an `as i32` (which
    // saturates and maps NaN) compiles to a scalar check per lane.
    const SHIFT: f32 = 12_582_912.0;
    let xc = x.clamp(0.0, 87.0);
    let t = xc * LOG2E + SHIFT;
    let kf = t - SHIFT;
    let k = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let r = -((xc - kf * LN2_HI) - kf * LN2_LO);
    let mut p = 1.0 / 5_040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = f32::from_bits(((127 - k) as u32) << 23);
    if x < 87.0 { p * scale } else { 0.0 }
}

/// e^{−x} for x ≥ 0 (0 beyond 708), to about 1 ulp, in straight-line code
/// the compiler vectorizes (std's `exp` is a library call per element):
/// x = k ln2 + r with |r| ≤ ln2/2, a degree-13 Taylor polynomial of e^{−r},
/// and 2^{−k} put into the exponent bits. Same scheme as the WGSL kernel.
#[inline(always)]
pub fn exp_neg(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let xc = x.clamp(0.0, 708.0);
    // i32, not i64: f64 → i32 conversion vectorizes on every x86 level.
    let k = (xc * LOG2E + 0.5) as i32;
    let kf = k as f64;
    let r = -((xc - kf * LN2_HI) - kf * LN2_LO);
    // Taylor coefficients 1/n!, n = 13..0, by Horner.
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = f64::from_bits(((1023 - k as i64) as u64) << 52);
    if x < 708.0 { p * scale } else { 0.0 }
}

/// Gaussian kernel matrix of the rows of `a` against those of `b` (both
/// with `d` columns), row-major n × m, computed in row tiles that each fit
/// one binding (and the output buffer is reused across tiles).
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    sigma: f64,
    zero_diag: bool,
) -> Result<Vec<f64>> {
    if d == 0 || a.is_empty() || b.is_empty() {
        return Ok(vec![]);
    }
    let m = b.len() / d;
    let rows = ctx.fit_rows(prec, m);
    gpu_tiled(ctx, prec, a, b, d, sigma, zero_diag, rows)
}

/// the module doc in tiles of `tile_rows` rows of K.
#[allow(clippy::too_many_arguments)]
pub fn gpu_tiled(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    a: &[f64],
    b: &[f64],
    d: usize,
    sigma: f64,
    zero_diag: bool,
    tile_rows: usize,
) -> Result<Vec<f64>> {
    if d == 0 || a.is_empty() || b.is_empty() {
        return Ok(vec![]);
    }
    let (n, m) = (a.len() / d, b.len() / d);
    let tile_rows = tile_rows.clamp(1, n);
    let scal = ctx.upload_real(&[1.0 / (2.0 * sigma * sigma)], prec)?;
    let ab = ctx.upload_real(a, prec)?;
    let bb = ctx.upload_real(b, prec)?;
    let kb = ctx.alloc(tile_rows * m, Elem::Real(prec))?;
    let mut out = Vec::with_capacity(n * m);
    let mut row0 = 0;
    while row0 < n {
        let rows = tile_rows.min(n - row0);
        let params = ctx.uniform(&Params {
            rows: rows as u32,
            row0: row0 as u32,
            m: m as u32,
            d: d as u32,
            zero_diag: zero_diag as u32,
            pad: [0; 3],
        })?;
        let disp = ctx.prepare(
            &KERNEL,
            prec,
            &[
                (&params).into(),
                (&scal).into(),
                (&ab).into(),
                (&bb).into(),
                (&kb).into(),
            ],
            (rows * m) as u64,
        )?;
        ctx.run_one(&disp)?;
        out.extend(kb.read_real_range(0, rows * m)?);
        row0 += rows;
    }
    Ok(out)
}
