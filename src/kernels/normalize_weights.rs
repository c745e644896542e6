//! Weight consensus with side constraints (paper lemma 4.1): per group of
//! edges (in-edges of a node for classifiers; out-edges of a code node for
//! NMF), `w̄[e] = (Σ_p partial[e][p]) / K`, optionally clamped at 0, then
//! rescaled to `Σ_e w̄[e]² = Ω²`. When clamping leaves nothing positive (or
//! the group's norm is 0) the first largest unclamped mean gets Ω and the
//! rest 0, as the reference C code does. Twin of `shaders/normalize_weights.wgsl`,
//! which runs a workgroup per group (its norm summed as a tree, so its
//! last bits may differ from this serial sum).

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::real::Precision;
use crate::real::Real;
use std::sync::Arc;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "normalize_weights",
    source: include_str!("../../shaders/normalize_weights.wgsl"),
    deps: &[],
    entry: "normalize_weights",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::Read,
    ],
    workgroup: 64,
    lanes: 1,
};

/// [`KERNEL`] reading w's rows as quads of items (`Params::row_items` a
/// multiple of 4).
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// The same with a workgroup per group, lanes over its edges.
pub const GROUPS: Kernel = Kernel {
    entry: "normalize_groups",
    ..KERNEL
};

/// Mean edges per group from which [`GROUPS`] is used. On lavapipe the
/// workgroup per group made 20 batched LEDM m = 6 starts (groups of 6
/// edges) 3× slower per iteration; on a GPU wide groups leave a lane per
/// group walking hundreds of edges while the others idle.
pub const WIDE_GROUP: usize = 64;

/// The kernel for these groups and the invocations to dispatch: one per
/// group, or a workgroup per group when they are wide.
pub fn kernel_for(group_ptr: &[u32], wide: bool) -> (&'static Kernel, u64) {
    let groups = group_ptr.len().saturating_sub(1);
    if wide {
        (&GROUPS, groups as u64 * GROUPS.workgroup as u64)
    } else {
        (&KERNEL, groups as u64)
    }
}

/// Whether the groups are wide enough for a workgroup each.
pub fn wide(group_ptr: &[u32]) -> bool {
    let groups = group_ptr.len().saturating_sub(1).max(1);
    let edges = group_ptr.last().copied().unwrap_or(0) as usize;
    edges >= WIDE_GROUP * groups
}

/// Uniform parameters (matches `NormParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Groups G.
    pub groups: u32,
    /// Items in the whole batch (the divisor of the mean).
    pub items_total: u32,
    /// Partial sums per edge.
    pub parts_total: u32,
    /// 1 = clamp at 0.
    pub clamp: u32,
    /// Nonzero: the means are taken from w's rows of this many items (one
    /// chunk), summed as `reduce_rows_serial` sums them, instead of from
    /// partial sums.
    pub row_items: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// One group: means `v` (in group order) → normalized consensus, in place.
pub fn normalize_group<T: Real>(v: &mut [T], clamp: bool, omega: T) {
    if v.is_empty() {
        return;
    }
    let mut wmax = v[0];
    let mut imax = 0;
    let mut sumsq = T::ZERO;
    for (i, x) in v.iter_mut().enumerate() {
        if i == 0 || *x > wmax {
            wmax = *x;
            imax = i;
        }
        if clamp {
            *x = x.max(T::ZERO);
        }
        sumsq += *x * *x;
    }
    if (clamp && wmax <= T::ZERO) || sumsq == T::ZERO {
        v.fill(T::ZERO);
        v[imax] = omega;
        return;
    }
    let scale = omega / sumsq.sqrt();
    for x in v.iter_mut() {
        *x *= scale;
    }
}

/// Plain-loop f64 twin (also the CPU backend: O(E), never the bottleneck).
#[allow(clippy::too_many_arguments)]
pub fn run<T: Real>(
    group_ptr: &[u32],
    group_edges: &[u32],
    partial: &[T],
    parts_total: usize,
    items_total: usize,
    clamp: bool,
    omega: T,
    wa: &mut [T],
) {
    let inv_k = T::ONE / T::from_f64(items_total as f64);
    let mut v = Vec::new();
    for g in 0..group_ptr.len().saturating_sub(1) {
        let edges = &group_edges[group_ptr[g] as usize..group_ptr[g + 1] as usize];
        v.clear();
        v.extend(edges.iter().map(|&e| {
            let e = e as usize;
            partial[e * parts_total..(e + 1) * parts_total]
                .iter()
                .copied()
                .sum::<T>()
                * inv_k
        }));
        normalize_group(&mut v, clamp, omega);
        for (&e, &x) in edges.iter().zip(&v) {
            wa[e as usize] = x;
        }
    }
}

/// Where the GPU normalization takes each edge's sum over items from.
#[derive(Clone, Copy, Debug)]
pub enum Sums<'a> {
    /// `parts` partial sums per edge, `[E][parts]`.
    Partial(&'a [f64], usize),
    /// w itself, `[E][items]` (summed as `reduce_rows_serial` sums it).
    Rows(&'a [f64], usize),
}

/// GPU launch: the consensus weights from the edges' sums over
/// `items_total` items (a workgroup per group when `wide`, never with rows).
#[allow(clippy::too_many_arguments)]
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    group_ptr: &[u32],
    group_edges: &[u32],
    sums: Sums<'_>,
    items_total: usize,
    clamp: bool,
    omega: f64,
    edges: usize,
    wide: bool,
) -> Result<Vec<f64>> {
    let groups = group_ptr.len().saturating_sub(1);
    let (data, parts_total, row_items) = match sums {
        Sums::Partial(p, parts) => (p, parts, 0),
        Sums::Rows(w, items) => (w, 0, items),
    };
    let params = ctx.uniform(&Params {
        groups: groups as u32,
        items_total: items_total as u32,
        parts_total: parts_total as u32,
        clamp: clamp as u32,
        row_items: row_items as u32,
        pad: [0; 3],
    })?;
    let sc = ctx.upload_real(&[omega], prec)?;
    let gp = ctx.upload_u32(group_ptr)?;
    let ge = ctx.upload_u32(group_edges)?;
    let db = ctx.upload_real(data, prec)?;
    let wa = ctx.alloc(edges, Elem::Real(prec))?;
    let (mut kernel, threads) = kernel_for(group_ptr, wide && row_items == 0);
    if row_items > 0 {
        kernel = crate::gpu::for_items(&KERNEL, &PAIR, &QUAD, row_items);
    }
    let d = ctx.prepare(
        kernel,
        prec,
        &[
            (&params).into(),
            (&sc).into(),
            (&gp).into(),
            (&ge).into(),
            (&db).into(),
            (&wa).into(),
            (&db).into(),
        ],
        threads,
    )?;
    ctx.run_one(&d)?;
    wa.read_real()
}
