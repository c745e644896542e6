//! A-projection at the nodes: `x̄[i,k] = mean over out-edges e of x[e,k]`,
//! then the node's side constraint on `(x̄, y, b)`:
//! free, clamp at 0 (NMF codes), data value, ReLU, class margin, zigmoid,
//! gapped step, or fixed value. Twin of `shaders/consensus_nodes.wgsl`.

use super::class_select::LABEL_EXEMPT;
use super::par::{SharedMut, SimdLevel, parallel_enough, simd_dispatch};
use super::project_activation as act;
use crate::error::Result;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::gpu::{BindRef, GpuContext};
use crate::real::Precision;
use crate::real::Real;
use rayon::prelude::*;
use std::sync::Arc;

/// x̄ only.
pub const NODE_FREE: u32 = 0;
/// x̄ clamped at 0 (NMF code node).
pub const NODE_NONNEG: u32 = 1;
/// x = data value (classifier input node).
pub const NODE_DATA: u32 = 2;
/// ReLU hidden node.
pub const NODE_RELU: u32 = 3;
/// Class node (its class index in `node_param`).
pub const NODE_CLASS: u32 = 4;
/// Zigmoid node.
pub const NODE_ZIGMOID: u32 = 5;
/// Gapped-step node.
pub const NODE_STEP: u32 = 6;
/// Node with x fixed to the data value; y, b projected.
pub const NODE_FIXED: u32 = 7;
/// Zigmoid node whose x is fixed to the data value (as [`NODE_FIXED`]) for
/// the items labelled `node_param[i]`: an autoencoder's data nodes are
/// fixed on data items and free on code items, its code nodes the reverse.
pub const NODE_FIXED_ZIGMOID: u32 = 8;
/// Gapped-step node fixed for the items labelled `node_param[i]` (see
/// [`NODE_FIXED_ZIGMOID`]).
pub const NODE_FIXED_STEP: u32 = 9;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "consensus_nodes",
    source: include_str!("../../shaders/consensus_nodes.wgsl"),
    deps: &[include_str!("../../shaders/project_activation.wgsl")],
    entry: "consensus_nodes",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::Read,
    ],
    workgroup: 64,
    lanes: 1,
};

/// [`KERNEL`] over quads of items (a chunk of a multiple of 4 items).
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// Uniform parameters (matches `NodeParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items K (row stride).
    pub items: u32,
    /// Nodes N.
    pub nodes: u32,
    /// A word of the `stop` binding that, when nonzero, leaves the
    /// outputs as they are (`reduce_rows::NO_STOP`: always write).
    pub stop_word: u32,
    /// Padding.
    pub pad: u32,
}

/// Read-only inputs of the node consensus.
#[derive(Clone, Copy, Debug)]
pub struct NodeInputs<'a, T> {
    /// Items K.
    pub items: usize,
    /// CSR of out-edges per node (N+1).
    pub out_ptr: &'a [u32],
    /// Edge ids of out-edges.
    pub out_edges: &'a [u32],
    /// NODE_* per node.
    pub kind: &'a [u32],
    /// Per-node parameter (class index for class nodes).
    pub param: &'a [u32],
    /// Effective class label per item (`class_select::LABEL_EXEMPT`: exempted).
    pub labels: &'a [u32],
    /// Class margin Δ.
    pub class_margin: T,
    /// Activation half-width m.
    pub act_margin: T,
    /// x replicas [E][K].
    pub x: &'a [T],
    /// y [N][K].
    pub y: &'a [T],
    /// b [N][K].
    pub b: &'a [T],
    /// Data values [N][K] (used at data/fixed nodes).
    pub data: &'a [T],
    /// When given (CPU only): Σ x over each node's out-edges as rows of
    /// partial sums, used instead of reading `x`.
    pub xsum: Option<XSumRows<'a, T>>,
}

/// Partial sums of x per node, as written by `rrr_step::cpu` (see
/// `rrr_step::XSumLayout`): node i's Σ over its out-edges of x is the sum of
/// rows `node_rows[node_ptr[i]..node_ptr[i + 1]]` of `sums`, in that order.
#[derive(Clone, Copy, Debug)]
pub struct XSumRows<'a, T> {
    /// CSR per node (N+1).
    pub node_ptr: &'a [u32],
    /// Row numbers.
    pub node_rows: &'a [u32],
    /// Rows [row][K].
    pub sums: &'a [T],
}

#[inline(always)]
fn node_op<T: Real>(inp: &NodeInputs<'_, T>, i: usize, k: usize, xbar: T, y: T, b: T) -> (T, T, T) {
    let idx = i * inp.items + k;
    match inp.kind[i] {
        NODE_NONNEG => (xbar.max(T::ZERO), y, b),
        NODE_DATA => (inp.data[idx], y, b),
        NODE_RELU => act::relu(xbar, y, b),
        // An exempted item's class variables stay as they are (eq. 32).
        NODE_CLASS if inp.labels[k] == LABEL_EXEMPT => (xbar, y, b),
        NODE_CLASS => {
            let (y, b) = act::class(y, b, inp.labels[k] == inp.param[i], inp.class_margin);
            (xbar, y, b)
        }
        NODE_ZIGMOID => act::zigmoid(xbar, y, b, inp.act_margin),
        NODE_STEP => act::step(xbar, y, b, inp.act_margin),
        NODE_FIXED => {
            let xf = inp.data[idx];
            let (y, b) = act::fixed(xf, y, b, inp.act_margin);
            (xf, y, b)
        }
        NODE_FIXED_ZIGMOID | NODE_FIXED_STEP if inp.labels[k] == inp.param[i] => {
            let xf = inp.data[idx];
            let (y, b) = act::fixed(xf, y, b, inp.act_margin);
            (xf, y, b)
        }
        NODE_FIXED_ZIGMOID => act::zigmoid(xbar, y, b, inp.act_margin),
        NODE_FIXED_STEP => act::step(xbar, y, b, inp.act_margin),
        _ => (xbar, y, b),
    }
}

/// Plain-loop f64 twin: one (k, i) at a time.
pub fn reference(inp: &NodeInputs<'_, f64>, xa: &mut [f64], ya: &mut [f64], ba: &mut [f64]) {
    let kk = inp.items;
    for i in 0..inp.kind.len() {
        for k in 0..kk {
            let (e0, e1) = (inp.out_ptr[i] as usize, inp.out_ptr[i + 1] as usize);
            let mut sum = 0.0;
            for &e in &inp.out_edges[e0..e1] {
                sum += inp.x[e as usize * kk + k];
            }
            let xbar = if e1 > e0 { sum / (e1 - e0) as f64 } else { 0.0 };
            let idx = i * kk + k;
            let (a, b, c) = node_op(inp, i, k, xbar, inp.y[idx], inp.b[idx]);
            xa[idx] = a;
            ya[idx] = b;
            ba[idx] = c;
        }
    }
}

/// CPU backend: rows of nodes in parallel, contiguous loops over items.
pub fn cpu<T: Real>(inp: &NodeInputs<'_, T>, xa: &mut [T], ya: &mut [T], ba: &mut [T]) {
    let kk = inp.items;
    let nodes = inp.kind.len();
    if kk == 0 || nodes == 0 {
        return;
    }
    let level = SimdLevel::current();
    let ya_s = SharedMut::new(ya);
    let ba_s = SharedMut::new(ba);
    let work = |(i, xrow): (usize, &mut [T])| {
        // SAFETY: row i of ya/ba is written only by the task that owns row i of xa.
        let yrow = unsafe { ya_s.slice(i * kk, kk) };
        let brow = unsafe { ba_s.slice(i * kk, kk) };
        node_row_at(level, inp, i, xrow, yrow, brow);
    };
    if parallel_enough(inp.out_edges.len() * kk + nodes * kk) {
        xa.par_chunks_mut(kk).enumerate().for_each(work);
    } else {
        xa.chunks_mut(kk).enumerate().for_each(work);
    }
}

simd_dispatch! {
    /// [`node_row`] for a SIMD level.
    fn node_row_at<T>(
        inp: &NodeInputs<'_, T>,
        i: usize,
        xrow: &mut [T],
        yrow: &mut [T],
        brow: &mut [T],
    ) -> () = node_row
}

/// Node i for all items: mean over out-edges, then the node's constraint.
#[inline(always)]
fn node_row<T: Real>(
    inp: &NodeInputs<'_, T>,
    i: usize,
    xrow: &mut [T],
    yrow: &mut [T],
    brow: &mut [T],
) {
    let kk = inp.items;
    let (yin, bin) = (&inp.y[i * kk..(i + 1) * kk], &inp.b[i * kk..(i + 1) * kk]);
    if inp.kind[i] == NODE_DATA {
        // x is the data whatever the out-edges hold: skip their mean (for
        // MNIST that is a pass over 98% of x).
        xrow.copy_from_slice(&inp.data[i * kk..(i + 1) * kk]);
        yrow.copy_from_slice(yin);
        brow.copy_from_slice(bin);
        return;
    }
    // Fixed nodes also take x from the data.
    let e0 = inp.out_ptr[i] as usize;
    let e1 = if inp.kind[i] == NODE_FIXED {
        e0
    } else {
        inp.out_ptr[i + 1] as usize
    };
    xrow.fill(T::ZERO);
    match inp.xsum {
        Some(xs) if e1 > e0 => {
            let rows = &xs.node_rows[xs.node_ptr[i] as usize..xs.node_ptr[i + 1] as usize];
            for &r in rows {
                let src = &xs.sums[r as usize * kk..(r as usize + 1) * kk];
                for (s, &v) in xrow.iter_mut().zip(src) {
                    *s += v;
                }
            }
        }
        _ => {
            for &e in &inp.out_edges[e0..e1] {
                let src = &inp.x[e as usize * kk..(e as usize + 1) * kk];
                for (s, &v) in xrow.iter_mut().zip(src) {
                    *s += v;
                }
            }
        }
    }
    if e1 > e0 {
        let inv = T::ONE / T::from_f64((e1 - e0) as f64);
        for s in xrow.iter_mut() {
            *s *= inv;
        }
    }
    if inp.kind[i] == NODE_RELU {
        // The bulk of a classifier: a branch-free loop the compiler vectorizes.
        for k in 0..kk {
            (xrow[k], yrow[k], brow[k]) = act::relu(xrow[k], yin[k], bin[k]);
        }
        return;
    }
    for k in 0..kk {
        let (a, b, c) = node_op(inp, i, k, xrow[k], yin[k], bin[k]);
        xrow[k] = a;
        yrow[k] = b;
        brow[k] = c;
    }
}

/// Node consensus; returns (xa, ya, ba). Takes [`QUAD`] or [`PAIR`] where
/// the items allow it, as the GPU engine does.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    inp: &NodeInputs<'_, f64>,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let kernel = crate::gpu::for_items(&KERNEL, &PAIR, &QUAD, inp.items);
    gpu_with(ctx, prec, kernel, inp)
}

/// Node consensus by a given variant ([`KERNEL`], or [`QUAD`] for a
/// multiple of 4 items, [`PAIR`] for an even count); returns (xa, ya, ba).
pub fn gpu_with(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    inp: &NodeInputs<'_, f64>,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let n = inp.kind.len();
    let kk = inp.items;
    crate::gpu::check_lanes(kernel, kk)?;
    let params = ctx.uniform(&Params {
        items: kk as u32,
        nodes: n as u32,
        stop_word: super::reduce_rows::NO_STOP,
        pad: 0,
    })?;
    let stop = ctx.alloc(1, Elem::U32)?;
    let sc = ctx.upload_real(&[inp.class_margin, inp.act_margin], prec)?;
    let bufs_u = [inp.out_ptr, inp.out_edges, inp.kind, inp.param, inp.labels]
        .iter()
        .map(|v| ctx.upload_u32(v))
        .collect::<Result<Vec<_>>>()?;
    let bufs_r = [inp.x, inp.y, inp.b, inp.data]
        .iter()
        .map(|v| ctx.upload_real(v, prec))
        .collect::<Result<Vec<_>>>()?;
    let outs = (0..3)
        .map(|_| ctx.alloc(n * kk, Elem::Real(prec)))
        .collect::<Result<Vec<_>>>()?;
    let mut binds: Vec<BindRef<'_>> = vec![(&params).into(), (&sc).into()];
    binds.extend(bufs_u.iter().map(BindRef::from));
    binds.extend(bufs_r.iter().map(BindRef::from));
    binds.extend(outs.iter().map(BindRef::from));
    binds.push((&stop).into());
    let d = ctx.prepare(kernel, prec, &binds, (n * kk) as u64 / kernel.lanes as u64)?;
    ctx.run_one(&d)?;
    Ok((
        outs[0].read_real()?,
        outs[1].read_real()?,
        outs[2].read_real()?,
    ))
}
