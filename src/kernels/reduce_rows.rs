//! Partial sums over items of each row of an `[R][K]` array
//! (`partial[r][p] = Σ_{k in chunk p} v[r,k]`, chunks of [`CHUNK`] items), with
//! `v = z` or the reflection `v = 2a − z`. Used for the weight consensus
//! (mean of w over the batch), the bias B-consensus and RRR_err. The partial
//! sums are the seam for a multi-device allreduce. Twin of `shaders/reduce_rows.wgsl`.

use super::par::{SimdLevel, parallel_enough, simd_dispatch};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::real::Precision;
use crate::real::Real;
use rayon::prelude::*;
use std::sync::Arc;

/// Items per partial sum (one workgroup of 256 invocations, 4 items each).
pub const CHUNK: usize = 1024;

/// Sum z.
pub const MODE_SUM: u32 = 0;
/// Sum 2a − z.
pub const MODE_REFLECT: u32 = 1;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "reduce_rows",
    source: include_str!("../../shaders/reduce_rows.wgsl"),
    deps: &[],
    entry: "reduce_rows",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::Read,
    ],
    workgroup: 256,
    lanes: 1,
};

/// The same partial sums, one invocation per (row, part), no barriers.
pub const SERIAL: Kernel = Kernel {
    entry: "reduce_rows_serial",
    workgroup: 64,
    ..KERNEL
};

/// [`KERNEL`] over quads of items (rows of a multiple of 4 items).
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// [`SERIAL`] over quads of items.
pub const SERIAL_QUAD: Kernel = SERIAL.quad();

/// [`SERIAL`] over pairs of items (a multiple of 2, not of 4).
pub const SERIAL_PAIR: Kernel = SERIAL.pair();

/// Rows at most this long are reduced by [`SERIAL`] on hardware adapters.
pub const SERIAL_MAX_ITEMS: usize = 256;

/// The kernel for rows of `items` on `ctx`'s adapter and the invocations it
/// needs per (row, part). Software adapters (lavapipe) always take
/// [`SERIAL`]: they run a workgroup's invocations as SIMD lanes of one CPU
/// thread, where each of the tree's eight barriers switches between all of
/// them; at rows of 1000 items (784-20-10) the serial kernel took 5× less
/// device time there. Rows of a multiple of 4 items take the quad variant.
/// `GRADFREE_ROW_SUMS=tree` (or `serial`) chooses as a hardware adapter
/// (or a software one) would: tests run the engines' tree sums on lavapipe.
pub fn kernel_for(ctx: &GpuContext, items: usize) -> (&'static Kernel, u64) {
    let software = match std::env::var("GRADFREE_ROW_SUMS").as_deref() {
        Ok("tree") => false,
        Ok("serial") => true,
        _ => ctx.summary().software,
    };
    if items <= SERIAL_MAX_ITEMS || software {
        (
            crate::gpu::for_items(&SERIAL, &SERIAL_PAIR, &SERIAL_QUAD, items),
            1,
        )
    } else {
        (crate::gpu::for_items(&KERNEL, &PAIR, &QUAD, items), 256)
    }
}

/// Uniform parameters (matches `ReduceParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows R.
    pub rows: u32,
    /// Items K (row stride).
    pub items: u32,
    /// Partial sums per row from this call.
    pub parts: u32,
    /// MODE_*.
    pub mode: u32,
    /// Row stride of `partial`.
    pub parts_total: u32,
    /// Column where this call's partial sums start.
    pub parts_offset: u32,
    /// A word of the `stop` binding that, when nonzero, leaves `partial`
    /// as it is ([`NO_STOP`]: always write).
    pub stop_word: u32,
    /// Items per value of the rows (1: the items themselves; 4: the RRR
    /// step's quad sums of w), a divisor of [`CHUNK`] / 4. `items` then
    /// counts values and `parts` is [`parts`] of `items × unit`.
    pub unit: u32,
}

/// [`Params::stop_word`] of a reduction that always writes.
pub const NO_STOP: u32 = u32::MAX;

/// Partial sums per row for K items.
pub fn parts(items: usize) -> usize {
    items.div_ceil(CHUNK).max(1)
}

#[allow(clippy::too_many_arguments)]
/// Plain-loop f64 twin; writes `partial[r*parts_total + offset + p]`.
pub fn reference(
    z: &[f64],
    a: &[f64],
    rows: usize,
    items: usize,
    mode: u32,
    partial: &mut [f64],
    parts_total: usize,
    offset: usize,
) {
    for r in 0..rows {
        for p in 0..parts(items) {
            let mut acc = 0.0;
            for k in p * CHUNK..((p + 1) * CHUNK).min(items) {
                let i = r * items + k;
                acc += if mode == MODE_SUM {
                    z[i]
                } else {
                    2.0 * a[i] - z[i]
                };
            }
            partial[r * parts_total + offset + p] = acc;
        }
    }
}

/// CPU backend: one partial sum per row (parts_total = 1 layout), rows in parallel.
pub fn cpu_row_sums<T: Real>(z: &[T], a: Option<&[T]>, items: usize, out: &mut [T]) {
    if items == 0 {
        out.fill(T::ZERO);
        return;
    }
    let level = SimdLevel::current();
    let work = |(r, o): (usize, &mut T)| {
        let zr = &z[r * items..(r + 1) * items];
        *o = row_sum_at(level, zr, a.map(|a| &a[r * items..(r + 1) * items]));
    };
    if parallel_enough(z.len()) {
        out.par_iter_mut().enumerate().for_each(work);
    } else {
        out.iter_mut().enumerate().for_each(work);
    }
}

simd_dispatch! {
    /// [`row_sum`] for a SIMD level.
    fn row_sum_at<T>(z: &[T], a: Option<&[T]>) -> T = row_sum
}

/// Σ z, or Σ (2a − z), in [`LANES`] interleaved partial sums (a single
/// running sum is one long dependency chain that no vector unit can help).
#[inline(always)]
fn row_sum<T: Real>(z: &[T], a: Option<&[T]>) -> T {
    let two = T::from_f64(2.0);
    let mut acc = [T::ZERO; LANES];
    let body = z.len() / LANES * LANES;
    match a {
        None => {
            for c in z[..body].chunks_exact(LANES) {
                for l in 0..LANES {
                    acc[l] += c[l];
                }
            }
            for (l, &v) in z[body..].iter().enumerate() {
                acc[l] += v;
            }
        }
        Some(a) => {
            for (c, d) in z[..body]
                .chunks_exact(LANES)
                .zip(a[..body].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    acc[l] += two * d[l] - c[l];
                }
            }
            for (l, (&v, &w)) in z[body..].iter().zip(&a[body..]).enumerate() {
                acc[l] += two * w - v;
            }
        }
    }
    acc.iter().copied().sum()
}

/// Partial sums per row on the CPU.
const LANES: usize = 16;

/// Partial row sums with `parts_total = parts(items)` and offset 0, by the
/// kernel the engines pick for this row length.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    z: &[f64],
    a: &[f64],
    rows: usize,
    items: usize,
    mode: u32,
) -> Result<Vec<f64>> {
    let (kernel, _) = kernel_for(ctx, items);
    gpu_with(ctx, prec, kernel, z, a, rows, items, mode)
}

/// Partial row sums by a given variant (`KERNEL`, `SERIAL` or their quads,
/// which need a multiple of 4 items).
#[allow(clippy::too_many_arguments)]
pub fn gpu_with(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    z: &[f64],
    a: &[f64],
    rows: usize,
    items: usize,
    mode: u32,
) -> Result<Vec<f64>> {
    gpu_units(ctx, prec, kernel, z, a, rows, items, 1, mode)
}

/// [`gpu_with`] over rows of `values` values that each sum `unit` items:
/// the partial sums of [`parts`]`(values × unit)` chunks of items.
#[allow(clippy::too_many_arguments)]
pub fn gpu_units(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    z: &[f64],
    a: &[f64],
    rows: usize,
    values: usize,
    unit: usize,
    mode: u32,
) -> Result<Vec<f64>> {
    crate::gpu::check_lanes(kernel, values)?;
    let per_part = if kernel.entry == SERIAL.entry { 1 } else { 256 };
    let parts = parts(values * unit);
    let params = ctx.uniform(&Params {
        rows: rows as u32,
        items: values as u32,
        parts: parts as u32,
        mode,
        parts_total: parts as u32,
        parts_offset: 0,
        stop_word: NO_STOP,
        unit: unit as u32,
    })?;
    let zb = ctx.upload_real(z, prec)?;
    let ab = ctx.upload_real(a, prec)?;
    let out = ctx.alloc(rows * parts, Elem::Real(prec))?;
    let stop = ctx.alloc(1, Elem::U32)?;
    let d = ctx.prepare(
        kernel,
        prec,
        &[
            (&params).into(),
            (&zb).into(),
            (&ab).into(),
            (&out).into(),
            (&stop).into(),
        ],
        (rows * parts) as u64 * per_part,
    )?;
    ctx.run_one(&d)?;
    out.read_real()
}
