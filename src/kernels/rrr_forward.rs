//! A classifier batch's start on the device: every item's feed pass from a
//! labelled item set kept on the device, so that a batch costs the upload
//! of its row numbers instead of a host feed pass and N × K node values
//! (see `shaders/rrr_forward.wgsl`). Data nodes `0..dim` take the item's
//! inputs; each node j of `order` takes y = Ω⁻¹ Σ_e x[src(e)] w[e] over its
//! in-edges in order and x = y − b, clamped at 0 below `first_class`; the
//! predicted class is the first class node with the largest x. The f64
//! twin is [`reference`], which is the host classifier's feed pass written
//! over the batch. Twin of `shaders/rrr_forward.wgsl`.

use crate::gpu::{Bind, Kernel};

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "rrr_forward",
    source: include_str!("../../shaders/rrr_forward.wgsl"),
    deps: &[],
    entry: "rrr_forward",
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
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

/// [`KERNEL`] over quads of items (a chunk of a multiple of 4 items).
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// Uniform parameters (matches `ForwardParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items of the chunk (row stride).
    pub items: u32,
    /// Inputs per item: data nodes `0..dim`.
    pub dim: u32,
    /// Nodes in the order.
    pub order_len: u32,
    /// The first class node; the nodes before it (and after the data) are ReLUs.
    pub first_class: u32,
    /// Class nodes, `first_class..first_class + classes`.
    pub classes: u32,
    /// 1 = also write each item's predicted class.
    pub predict: u32,
    /// First position of the order this dispatch takes (0: it also reads
    /// the inputs).
    pub t_begin: u32,
    /// End of its positions (`order_len`: it also writes the labels or
    /// classes).
    pub t_end: u32,
}

/// The structure of a classifier's feed pass.
#[derive(Clone, Copy, Debug)]
pub struct Feed<'a> {
    /// Nodes N.
    pub nodes: usize,
    /// Inputs per item (data nodes `0..dim`).
    pub dim: usize,
    /// The other nodes in an order that has every source before its destination.
    pub order: &'a [u32],
    /// In-edge CSR by destination.
    pub in_ptr: &'a [u32],
    /// Source node per edge.
    pub src: &'a [u32],
    /// The first class node.
    pub first_class: usize,
    /// Class nodes.
    pub classes: usize,
    /// 1/Ω.
    pub inv_omega: f64,
}

/// The parts of `feed`'s order one dispatch each takes: all of it on
/// hardware; on a software adapter parts whose invocation loops stay
/// under llvmpipe's limit ([`crate::gpu::SOFTWARE_LOOP_LIMIT`]): a node
/// costs its in-edges and one, the first part also the inputs (five loop
/// iterations each, for quads) and the last the classes. A node with more
/// in-edges than that is a part alone.
pub fn order_parts(feed: &Feed, software: bool) -> Vec<std::ops::Range<usize>> {
    let len = feed.order.len();
    if !software || len == 0 {
        return std::iter::once(0..len).collect();
    }
    let budget = crate::gpu::SOFTWARE_LOOP_LIMIT
        .saturating_sub(fixed_loops(feed))
        .max(1);
    let mut parts = vec![];
    let (mut begin, mut used) = (0, 0);
    for (t, &j) in feed.order.iter().enumerate() {
        let j = j as usize;
        let edge = |j: usize| feed.in_ptr.get(j).map_or(0, |&e| e as usize);
        let cost = edge(j + 1).saturating_sub(edge(j)) + 1;
        if used > 0 && used + cost > budget {
            parts.push(begin..t);
            (begin, used) = (t, 0);
        }
        used += cost;
    }
    parts.push(begin..len);
    parts
}

/// The loop iterations every part may spend besides its nodes: the
/// inputs' and the classes' (see [`order_parts`]).
fn fixed_loops(feed: &Feed) -> usize {
    100 + 5 * feed.dim + 4 * (feed.classes + 1)
}

/// Whether every part of [`order_parts`] on a software adapter stays
/// under llvmpipe's loop limit: not where the inputs alone (a dimension
/// above about 13,000) or one node's in-edges exceed it, which no split
/// of the order can help (the pass would silently stop short).
pub fn fits_software_loop_limit(feed: &Feed) -> bool {
    let edge = |j: usize| feed.in_ptr.get(j).map_or(0, |&e| e as usize);
    let widest = feed
        .order
        .iter()
        .map(|&j| edge(j as usize + 1).saturating_sub(edge(j as usize)) + 1)
        .max()
        .unwrap_or(0);
    fixed_loops(feed) + widest <= crate::gpu::SOFTWARE_LOOP_LIMIT
}

/// What [`reference`] computes for a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fed {
    /// Node values [N][K].
    pub x: Vec<f64>,
    /// Pre-activations [N][K] (0 at data nodes).
    pub y: Vec<f64>,
    /// Inputs at the data nodes' rows, 0 elsewhere, [N][K].
    pub data: Vec<f64>,
    /// Label per item.
    pub labels: Vec<u32>,
    /// Predicted class per item.
    pub predicted: Vec<u32>,
}

/// The f64 twin: the feed pass of items `rows` of the set (`inputs`
/// item-major `[items][dim]`, `set_labels` per item).
pub fn reference(
    f: &Feed<'_>,
    weights: &[f64],
    biases: &[f64],
    inputs: &[f64],
    set_labels: &[u32],
    rows: &[u32],
) -> Fed {
    let (n, kk) = (f.nodes, rows.len());
    let mut out = Fed {
        x: vec![0.0; n * kk],
        y: vec![0.0; n * kk],
        data: vec![0.0; n * kk],
        labels: vec![0; kk],
        predicted: vec![0; kk],
    };
    for (k, &row) in rows.iter().enumerate() {
        let row = row as usize;
        for i in 0..f.dim {
            let v = inputs[row * f.dim + i];
            out.x[i * kk + k] = v;
            out.data[i * kk + k] = v;
        }
        for &j in f.order {
            let j = j as usize;
            let edges = f.in_ptr[j] as usize..f.in_ptr[j + 1] as usize;
            let mut s = 0.0;
            for (&src, &w) in f.src[edges.clone()].iter().zip(&weights[edges]) {
                s += out.x[src as usize * kk + k] * w;
            }
            let y = s * f.inv_omega;
            let x = y - biases[j];
            out.y[j * kk + k] = y;
            out.x[j * kk + k] = if j < f.first_class { x.max(0.0) } else { x };
        }
        out.labels[k] = set_labels[row];
        let mut best = 0;
        for c in 1..f.classes {
            if out.x[(f.first_class + c) * kk + k] > out.x[(f.first_class + best) * kk + k] {
                best = c;
            }
        }
        out.predicted[k] = best as u32;
    }
    out
}
