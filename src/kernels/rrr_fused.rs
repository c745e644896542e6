//! Whole RRR iterations of a small problem in one dispatch (see
//! `shaders/rrr_fused.wgsl`): a window of iterations up to the next
//! convergence check, one workgroup per independent block of the network
//! ([`blocks`]), each iteration's phases (node consensus, weight consensus
//! from w's rows and the bias sums, the step, the error sums into the
//! history) separated by storage barriers. The phases call the
//! functions of `consensus_nodes`, `normalize_weights`, `reduce_rows`,
//! and `rrr_step`, whose f64 twins are this kernel's twin: the state
//! takes the same bits as with those kernels dispatched one by one, and
//! the engine's tests compare both. The sums into the RRR_err history are
//! the serial row sums' item by item, where the separate reduction may take
//! quads or (hardware, rows past 256 items) a tree: RRR_err agrees to
//! rounding, and a run with a tolerance could stop one check apart.
//!
//! Why: a problem of a few thousand (item, edge) pairs per iteration (20
//! batched LEDM starts: 600 edges × 6 items) is bound by the cost of a
//! dispatch, four per iteration, while a few workgroups do its work in a
//! few microseconds. A block's workgroup cannot use a large GPU, so the
//! engine takes this kernel only below [`MAX_ITEM_EDGES`].

use crate::gpu::{Bind, Kernel};

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "rrr_fused",
    source: include_str!("../../shaders/rrr_fused.wgsl"),
    deps: &[
        include_str!("../../shaders/project_activation.wgsl"),
        include_str!("../../shaders/consensus_nodes.wgsl"),
        include_str!("../../shaders/project_bilinear.wgsl"),
        include_str!("../../shaders/rrr_step.wgsl"),
        include_str!("../../shaders/normalize_weights.wgsl"),
        include_str!("../../shaders/reduce_rows.wgsl"),
    ],
    entry: "rrr_fused",
    binds: &[
        Bind::Uniform,
        // scalars, out_ptr, out_edges, node_kind, node_param, labels, bil,
        // in_ptr, src, metric, group_ptr, group_edges, data, blocks
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
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        // x, w, y, b, xa, ya, ba, wa, bpart, err, hist, counters
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        // the window
        Bind::Uniform,
    ],
    workgroup: 64,
    lanes: 1,
};

/// [`KERNEL`] over quads of items (a batch of a multiple of 4 items).
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// Eight invocations per block, one SIMD group of llvmpipe's (8 f32 lanes):
/// at a barrier a software adapter then has no other group of the
/// workgroup to switch to. On lavapipe it took 20 batched LEDM m = 6
/// starts from 1.91 to 1.44 s per 10,000 iterations.
pub const LANES8: Kernel = Kernel {
    entry: "rrr_fused_lanes8",
    workgroup: 8,
    ..KERNEL
};

/// [`LANES8`] over quads of items.
pub const LANES8_QUAD: Kernel = LANES8.quad();

/// [`LANES8`] over pairs of items.
pub const LANES8_PAIR: Kernel = LANES8.pair();

/// The variant for an adapter: [`LANES8`] on software adapters, [`KERNEL`]
/// (64 invocations per block) elsewhere, over quads or pairs where
/// `items` allows.
pub fn kernel_for(software: bool, items: usize) -> &'static Kernel {
    match software {
        true => crate::gpu::for_items(&LANES8, &LANES8_PAIR, &LANES8_QUAD, items),
        false => crate::gpu::for_items(&KERNEL, &PAIR, &QUAD, items),
    }
}

/// Storage buffers the kernel binds: an adapter must allow as many per
/// shader stage (lavapipe allows 32, Metal 31).
pub const STORAGE_BUFFERS: u32 = 26;

/// (item, edge) pairs per iteration up to which the engine runs whole
/// windows in one dispatch by default. On lavapipe, 20 batched LEDM m = 6
/// starts (3,600) ran 1.7× faster per iteration; the `maj13` classifier at
/// batches of 128 (136,448), one block, is left to the separate kernels
/// until a hardware GPU measures it (`scripts/gpu-check.sh`, fused-on).
pub const MAX_ITEM_EDGES: usize = 16_384;

/// Uniform parameters (matches `FusedParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items of the batch.
    pub items: u32,
    /// Nodes N.
    pub nodes: u32,
    /// Bilinear nodes J.
    pub bil_nodes: u32,
    /// Weight-norm groups.
    pub weight_groups: u32,
    /// Partial sums per node of the bias sums.
    pub parts_total: u32,
    /// Step mode (`rrr_step::MODE_*`).
    pub mode: u32,
    /// 1 when the nodes have biases.
    pub has_bias: u32,
    /// Items over all processes (the divisor of the means).
    pub items_total: u32,
    /// Items per row of w, whose sums are the weight means.
    pub row_items: u32,
    /// 1 to clamp the weight means at 0.
    pub clamp: u32,
    /// Error groups.
    pub groups: u32,
    /// Partial sums per error group and history slot.
    pub hist_parts: u32,
    /// Slots of the history ring.
    pub history: u32,
    /// Per-item errors per error group.
    pub group_items: u32,
    /// This dispatch's first iteration within the window.
    pub offset: u32,
    /// The most iterations this dispatch runs.
    pub span: u32,
}

/// The window's uniform (matches `FusedWindow`), written per window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Window {
    /// The window's first iteration in the call.
    pub first: u32,
    /// Iterations of the window.
    pub count: u32,
    /// Padding.
    pub pad: [u32; 2],
}

/// Whether a batch of `items` over `edges` is small enough for the kernel.
pub fn small(items: usize, edges: usize) -> bool {
    items.saturating_mul(edges) <= MAX_ITEM_EDGES
}

/// The parts of an RRR network that decide its blocks.
#[derive(Clone, Copy, Debug)]
pub struct Network<'a> {
    /// Nodes N.
    pub nodes: usize,
    /// Source and destination node of each edge.
    pub src: &'a [u32],
    /// See `src`.
    pub dst: &'a [u32],
    /// The bilinear nodes.
    pub bil: &'a [u32],
    /// Weight-norm groups (CSR over edge ids).
    pub group_ptr: &'a [u32],
    /// See `group_ptr`.
    pub group_edges: &'a [u32],
    /// Error groups: equal runs of `bil`.
    pub err_groups: usize,
    /// In-edge CSR offsets per node.
    pub in_ptr: &'a [u32],
    /// Out-edge CSR offsets per node.
    pub out_ptr: &'a [u32],
}

/// An upper bound on the loop iterations one invocation of `kernel` runs
/// per RRR iteration (on a software adapter a dispatch's iterations stay
/// within [`crate::gpu::SOFTWARE_LOOP_LIMIT`]), for `items` items over `blocks` (see [`blocks`]): per
/// phase, the passes over the largest block's elements times the longest
/// walk of one element, the root's bisection at its cap.
pub fn loop_iterations(
    kernel: &Kernel,
    p: &Network<'_>,
    blocks: &[u32],
    items: usize,
    has_bias: bool,
) -> usize {
    let lanes = kernel.lanes as usize;
    let kq = items / lanes;
    let per_part = 1024 / lanes;
    let parts = items.div_ceil(1024).max(1);
    let wg = kernel.workgroup as usize;
    let passes = |n: usize| n.div_ceil(wg);
    let degree = |ptr: &[u32], nodes: &mut dyn Iterator<Item = usize>| {
        nodes
            .map(|i| (ptr[i + 1] - ptr[i]) as usize)
            .max()
            .unwrap_or(0)
    };
    let max_out = degree(p.out_ptr, &mut (0..p.nodes));
    let max_in = degree(p.in_ptr, &mut p.bil.iter().map(|&j| j as usize));
    let max_group = degree(p.group_ptr, &mut (0..p.group_ptr.len().saturating_sub(1)));
    let group_items = p.bil.len() / p.err_groups.max(1) * items;
    let hist_parts = group_items.div_ceil(1024).max(1);
    // The serial sums walk at most a part, and at most the row.
    let bias_walk = kq.min(per_part);
    let err_walk = (group_items / lanes).min(per_part);
    let root = lanes * (super::project_bilinear::MAX_ITER as usize + 2);
    blocks
        .chunks(BLOCK_WORDS)
        .map(|b| {
            let count = |f: usize| (b[2 * f + 1] - b[2 * f]) as usize;
            let (nodes, bil, groups, errs) = (count(0), count(1), count(2), count(3));
            let bias = if has_bias {
                passes(nodes * parts) * (bias_walk + 1)
            } else {
                0
            };
            1 + passes(nodes * kq) * (max_out + lanes + 1)
                + passes(groups) * (max_group * (kq + 3) + 1)
                + bias
                + passes(bil * kq) * (2 * max_in + root + lanes + 1)
                + passes(errs * hist_parts) * (err_walk + 1)
                // A block of one error group: one lane sums the lanes' sums.
                + wg
                + 1
        })
        .max()
        .unwrap_or(1)
}

/// Words per block in the kernel's `blocks` array.
pub const BLOCK_WORDS: usize = 8;

/// The blocks of a network that iterate independently, one workgroup
/// each: per block its first and end node, bilinear node (index into
/// `bil`), weight group and error group, flattened. A block is a run of
/// connected components that are contiguous in all four numberings and
/// hold whole weight and error groups (the starts of a batched LEDM run);
/// where the numbering interleaves components, the whole network is one
/// block. At most `max_blocks` blocks (neighbouring components merged).
pub fn blocks(p: &Network<'_>, max_blocks: usize) -> Vec<u32> {
    let whole = vec![
        0,
        p.nodes as u32,
        0,
        p.bil.len() as u32,
        0,
        p.group_ptr.len().saturating_sub(1) as u32,
        0,
        p.err_groups as u32,
    ];
    let comps = components(p);
    let Some(starts) = block_starts(p, &comps) else {
        return whole;
    };
    let count = starts.len();
    if count <= 1 || max_blocks <= 1 {
        return whole;
    }
    // Merge neighbouring components into at most max_blocks even runs.
    let per = count.div_ceil(max_blocks);
    let end = [
        p.nodes as u32,
        p.bil.len() as u32,
        p.group_ptr.len().saturating_sub(1) as u32,
        p.err_groups as u32,
    ];
    let mut out = Vec::with_capacity(count.div_ceil(per) * BLOCK_WORDS);
    for first in (0..count).step_by(per) {
        let next = first + per;
        for f in 0..4 {
            out.push(starts[first][f]);
            out.push(if next < count {
                starts[next][f]
            } else {
                end[f]
            });
        }
    }
    out
}

/// Narrows each block's node range (`blocks`, see [`blocks`]) to its
/// nodes with out-edges, for problems whose iterations read only the x
/// consensus of such nodes: in NMF mode without biases the step reads xa
/// at its in-edges' sources and neither ya nor ba, so the consensus of the
/// data nodes is never read (20 batched LEDM m = 6 starts: 5 of each
/// start's 11 nodes). The range is the block's first to last such node;
/// a block without one keeps an empty range.
pub fn sources_only(blocks: &mut [u32], out_ptr: &[u32]) {
    let sends = |i: u32| out_ptr[i as usize + 1] > out_ptr[i as usize];
    for b in blocks.chunks_exact_mut(BLOCK_WORDS) {
        let first = (b[0]..b[1]).find(|&i| sends(i)).unwrap_or(b[0]);
        let end = (first..b[1])
            .rev()
            .find(|&i| sends(i))
            .map_or(first, |i| i + 1);
        b[0] = first;
        b[1] = end;
    }
}

/// Each node's connected component, numbered by first appearance.
fn components(p: &Network<'_>) -> Vec<usize> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..p.nodes).collect();
    for (&s, &d) in p.src.iter().zip(p.dst) {
        let (a, b) = (root(&mut parent, s as usize), root(&mut parent, d as usize));
        parent[a.max(b)] = a.min(b);
    }
    let mut number = vec![usize::MAX; p.nodes];
    let mut next = 0;
    (0..p.nodes)
        .map(|i| {
            let r = root(&mut parent, i);
            if number[r] == usize::MAX {
                number[r] = next;
                next += 1;
            }
            number[r]
        })
        .collect()
}

/// Per component, its first node, bilinear node, weight group and error
/// group, if the components are contiguous and non-decreasing in all four
/// numberings and no weight or error group crosses one.
fn block_starts(p: &Network<'_>, comp: &[usize]) -> Option<Vec<[u32; 4]>> {
    let count = comp.iter().max().map_or(0, |&c| c + 1);
    let mut starts = vec![[u32::MAX; 4]; count];
    // Records that item `i` of numbering `f` belongs to component `c`:
    // the components must not decrease along the numbering.
    let mut seen = [0usize; 4];
    let mut mark = |f: usize, i: usize, c: usize, starts: &mut Vec<[u32; 4]>| -> bool {
        if c < seen[f] {
            return false;
        }
        seen[f] = c;
        if starts[c][f] == u32::MAX {
            starts[c][f] = i as u32;
        }
        true
    };
    for (i, &c) in comp.iter().enumerate() {
        if !mark(0, i, c, &mut starts) {
            return None;
        }
    }
    for (jj, &j) in p.bil.iter().enumerate() {
        if !mark(1, jj, comp[j as usize], &mut starts) {
            return None;
        }
    }
    let mut last = 0;
    for g in 0..p.group_ptr.len().saturating_sub(1) {
        let edges = &p.group_edges[p.group_ptr[g] as usize..p.group_ptr[g + 1] as usize];
        // An empty group goes with the component before it.
        let c = edges
            .first()
            .map_or(last, |&e| comp[p.src[e as usize] as usize]);
        if edges.iter().any(|&e| comp[p.src[e as usize] as usize] != c)
            || !mark(2, g, c, &mut starts)
        {
            return None;
        }
        last = c;
    }
    let per_group = p.bil.len() / p.err_groups.max(1);
    last = 0;
    for g in 0..p.err_groups {
        let block = &p.bil[g * per_group..(g + 1) * per_group];
        let c = block.first().map_or(last, |&j| comp[j as usize]);
        if block.iter().any(|&j| comp[j as usize] != c) || !mark(3, g, c, &mut starts) {
            return None;
        }
        last = c;
    }
    // Every component needs a start in each numbering: one without any
    // bilinear node, group or error group takes the next one's.
    for f in 0..4 {
        let end = [
            p.nodes,
            p.bil.len(),
            p.group_ptr.len().saturating_sub(1),
            p.err_groups,
        ][f] as u32;
        let mut next = end;
        for c in (0..count).rev() {
            if starts[c][f] == u32::MAX {
                starts[c][f] = next;
            }
            next = starts[c][f];
        }
    }
    Some(starts)
}
