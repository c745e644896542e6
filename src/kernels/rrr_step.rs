//! The fused RRR step at every (item k, bilinear node j), given the
//! A-projection `a = PA(z)` (node values xa, ya, ba and weights wa):
//!
//! ```text
//! r = 2a − z                      reflection (x, w per in-edge; y)
//! b = PB(r)                       bilinear projection, metric g_j on y;
//!                                 bias: mean over the batch of 2ba − b
//! z ← z + β (b − a)               in place: PB's output is never stored
//! err[j][k] = |b − a|²_metric     reduced later: RRR_err² = Σ err / K
//! ```
//!
//! Mode [`MODE_NMF`]: y holds the fixed data (Ω = 1, c = 0, y not updated).
//! Mode [`MODE_FREE_Y`]: y is a variable with metric g_j.
//! Memory per (k, e) and iteration: read x, w, xa twice, write x, w once
//! (wa is per edge, cached); the quad variants may also write each quad's
//! sum of the updated w (a quarter element), which the GPU engine's weight
//! consensus reads instead of w. Twin of `shaders/rrr_step.wgsl`.

use super::par::{FlushDenormals, SharedMut, SimdLevel, parallel_enough, simd_dispatch};
use super::project_bilinear::{
    ROOT_BLOCK, STATUS_DEGENERATE, STATUS_NOT_CONVERGED, WarmRoot, apply_root, solve_block,
    solve_root,
};
use crate::error::{Error, Result};
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::gpu::{GpuBuffer, GpuContext};
use crate::real::Precision;
use crate::real::Real;
use rayon::prelude::*;
use std::sync::Arc;

/// y fixed by data (NMF).
pub const MODE_NMF: u32 = 0;
/// y free with metric g (classifier, autoencoder).
pub const MODE_FREE_Y: u32 = 1;

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "rrr_step",
    source: include_str!("../../shaders/rrr_step.wgsl"),
    deps: &[include_str!("../../shaders/project_bilinear.wgsl")],
    entry: "rrr_step",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::Read,
        Bind::ReadWrite,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

/// [`KERNEL`] over quads of items (a chunk of a multiple of 4 items): one
/// walk of the in-edges per pass for four items.
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// The cooperative variant for wide nodes: a workgroup of 64 lanes per
/// (bilinear node, two items or quads), each half's lanes over the node's
/// in-edges (see the shader). The same arithmetic per edge; the sums over
/// in-edges are a tree.
pub const WIDE: Kernel = Kernel {
    entry: "rrr_step_wide",
    ..KERNEL
};

/// [`WIDE`] over quads of items.
pub const WIDE_QUAD: Kernel = WIDE.quad();

/// [`WIDE`] over pairs of items (a multiple of 2, not of 4).
pub const WIDE_PAIR: Kernel = WIDE.pair();

/// Mean in-edges per bilinear node from which the GPU engine runs [`WIDE`]:
/// below it most of a half-workgroup's 32 lanes would idle.
pub const WIDE_NODE: usize = 64;

/// Whether the bilinear nodes `bil` (with in-edges `in_ptr`) are wide
/// enough for [`WIDE`].
pub fn wide(bil: &[u32], in_ptr: &[u32]) -> bool {
    let edges: usize = bil
        .iter()
        .map(|&j| (in_ptr[j as usize + 1] - in_ptr[j as usize]) as usize)
        .sum();
    !bil.is_empty() && edges >= WIDE_NODE * bil.len()
}

/// Largest in-degree the step keeps in registers between its two passes
/// (`DEGREE_MAX` of the shader).
pub const DEGREE_MAX: u32 = 8;

/// The in-degree every bilinear node of `bil` shares, if at most
/// [`DEGREE_MAX`], else 0: the step's `IN_DEGREE` override.
pub fn shared_in_degree(bil: &[u32], in_ptr: &[u32]) -> u32 {
    let degree = |j: u32| in_ptr[j as usize + 1] - in_ptr[j as usize];
    match bil.first() {
        Some(&j0) if degree(j0) <= DEGREE_MAX && bil.iter().all(|&j| degree(j) == degree(j0)) => {
            degree(j0)
        }
        _ => 0,
    }
}

/// Invocations of a step kernel over `nodes` bilinear nodes and rows of
/// `items` items: one per (node, item or quad), or for [`WIDE`] a
/// workgroup per (node, two items or quads).
pub fn threads(kernel: &Kernel, nodes: usize, items: usize) -> u64 {
    let per_row = items / kernel.lanes as usize;
    if kernel.entry == WIDE.entry {
        (nodes * per_row.div_ceil(2)) as u64 * kernel.workgroup as u64
    } else {
        (nodes * per_row) as u64
    }
}

/// Uniform parameters (matches `StepParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items in this chunk (row stride).
    pub items: u32,
    /// Bilinear nodes J.
    pub bil_nodes: u32,
    /// Partial sums per bias row.
    pub parts_total: u32,
    /// MODE_*.
    pub mode: u32,
    /// 1 = update biases.
    pub has_bias: u32,
    /// Items in the whole batch.
    pub items_total: u32,
    /// 1 = the quad variants write each quad's sum of the updated w
    /// (`[E][K/4]`), which the weight consensus reads in place of w.
    pub quad_sums: u32,
    /// Padding.
    pub pad: u32,
}

/// Read-only structure and A-projection values.
#[derive(Clone, Copy, Debug)]
pub struct StepInputs<'a, T> {
    /// Items K.
    pub items: usize,
    /// MODE_*.
    pub mode: u32,
    /// β.
    pub beta: T,
    /// Ω.
    pub omega: T,
    /// Bilinear node ids.
    pub bil: &'a [u32],
    /// In-edge CSR by destination (edges sorted by dst).
    pub in_ptr: &'a [u32],
    /// Source node per edge.
    pub src: &'a [u32],
    /// Metric weight g per node.
    pub metric: &'a [T],
    /// xa [N][K].
    pub xa: &'a [T],
    /// wa [E].
    pub wa: &'a [T],
    /// ya [N][K].
    pub ya: &'a [T],
    /// ba [N][K].
    pub ba: &'a [T],
    /// Bias consensus per node (mean over the batch of 2ba − b), when biases are used.
    pub bias_mean: Option<&'a [T]>,
}

/// Mutable RRR variables.
#[derive(Debug)]
pub struct StepState<'a, T> {
    /// x [E][K].
    pub x: &'a mut [T],
    /// w [E][K].
    pub w: &'a mut [T],
    /// y [N][K].
    pub y: &'a mut [T],
    /// b [N][K].
    pub b: &'a mut [T],
    /// Previous roots [J][K] to warm-start the root finder from (CPU only;
    /// `None` solves every root from scratch like the WGSL kernel).
    pub warm: Option<&'a mut [WarmRoot<T>]>,
    /// When given (CPU only, length E·[`WSUM_PARTS`]): receives Σ over
    /// items of the updated w for every in-edge of a bilinear node as
    /// [`WSUM_PARTS`] partial sums per edge (one per vector lane), which
    /// the next weight consensus adds up. Summed while w is still in
    /// registers instead of in another pass over memory; leaving the lanes
    /// apart keeps the hot loop free of horizontal reductions. Other
    /// entries are untouched.
    pub wsum: Option<&'a mut [T]>,
    /// When given (CPU only): receives Σ of the updated x over each
    /// group's in-edges from each source (see [`XSumLayout`]), which the
    /// next node consensus adds up instead of re-reading every replica.
    pub xsum: Option<XSums<'a, T>>,
}

/// Partial sums of x written by [`cpu`]: `sums` holds `layout.rows()`
/// rows of K items.
#[derive(Debug)]
pub struct XSums<'a, T> {
    /// Which rows belong to which group and source.
    pub layout: &'a XSumLayout,
    /// The rows, [row][K].
    pub sums: &'a mut [T],
}

/// Bilinear-node groups in [`XSumLayout::new`]. A constant, so that the
/// order in which the partial sums are added, hence every bit of the
/// consensus, does not depend on the number of threads.
pub const XSUM_GROUPS: usize = 32;

/// The bilinear nodes cut into at most [`XSUM_GROUPS`] runs of about equal
/// work; [`cpu`] runs each group as one task, its nodes in order, summing
/// the updated x of its in-edges per source node into rows of its own. A
/// node's x̄ is then the sum of its rows (one per group it feeds) instead
/// of a pass over all its out-edges' replicas: the node consensus reads
/// a few rows per node rather than E × K values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XSumLayout {
    /// Group g is bilinear-node positions `group_ptr[g]..group_ptr[g + 1]`.
    pub group_ptr: Vec<u32>,
    /// Group g owns rows `row_ptr[g]..row_ptr[g + 1]`.
    pub row_ptr: Vec<u32>,
    /// Per edge: the row its x is added to (its source's row in its
    /// destination's group).
    pub edge_row: Vec<u32>,
    /// Node i's rows are `node_rows[node_ptr[i]..node_ptr[i + 1]]`, in group order.
    pub node_ptr: Vec<u32>,
    /// See `node_ptr`.
    pub node_rows: Vec<u32>,
}

/// CSR offsets (`nodes` + 1) of items keyed by node: entries with key i
/// are `ptr[i]..ptr[i + 1]` once sorted by key.
pub fn csr_ptr(nodes: usize, key: &[u32]) -> Vec<u32> {
    let mut ptr = vec![0u32; nodes + 1];
    for &k in key {
        ptr[k as usize + 1] += 1;
    }
    for i in 0..nodes {
        ptr[i + 1] += ptr[i];
    }
    ptr
}

impl XSumLayout {
    /// The layout for `nodes` nodes whose bilinear nodes `bil` have the
    /// in-edges `in_ptr` (edges sorted by destination) with sources `src`.
    pub fn new(nodes: usize, bil: &[u32], in_ptr: &[u32], src: &[u32]) -> Self {
        // A node costs its in-edges plus a root solve per item (worth a few edges).
        let cost: Vec<usize> = bil
            .iter()
            .map(|&j| (in_ptr[j as usize + 1] - in_ptr[j as usize]) as usize + 8)
            .collect();
        let total: usize = cost.iter().sum();
        let groups = XSUM_GROUPS.min(bil.len());
        let mut group_ptr = vec![0u32];
        let mut acc = 0;
        for (jj, c) in cost.iter().enumerate() {
            acc += c;
            let closed = group_ptr.len() - 1;
            if jj + 1 < bil.len() && acc * groups >= (closed + 1) * total {
                group_ptr.push(jj as u32 + 1);
            }
        }
        if !bil.is_empty() {
            group_ptr.push(bil.len() as u32);
        }
        let mut row_ptr = vec![0u32];
        let mut row_src: Vec<u32> = Vec::new();
        let mut edge_row = vec![0u32; src.len()];
        let (mut stamp, mut row_of) = (vec![usize::MAX; nodes], vec![0u32; nodes]);
        for g in 0..group_ptr.len() - 1 {
            for &j in &bil[group_ptr[g] as usize..group_ptr[g + 1] as usize] {
                for e in in_ptr[j as usize] as usize..in_ptr[j as usize + 1] as usize {
                    let s = src[e] as usize;
                    if stamp[s] != g {
                        stamp[s] = g;
                        row_of[s] = row_src.len() as u32;
                        row_src.push(s as u32);
                    }
                    edge_row[e] = row_of[s];
                }
            }
            row_ptr.push(row_src.len() as u32);
        }
        // Rows by source node; rows were numbered group by group, so a
        // stable sort keeps each node's rows in group order.
        let node_ptr = csr_ptr(nodes, &row_src);
        let mut node_rows: Vec<u32> = (0..row_src.len() as u32).collect();
        node_rows.sort_by_key(|&r| row_src[r as usize]);
        XSumLayout {
            group_ptr,
            row_ptr,
            edge_row,
            node_ptr,
            node_rows,
        }
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.group_ptr.len().saturating_sub(1)
    }

    /// Number of rows of partial sums.
    pub fn rows(&self) -> usize {
        *self.row_ptr.last().unwrap_or(&0) as usize
    }
}

/// Partial sums per edge in [`StepState::wsum`].
pub const WSUM_PARTS: usize = ROOT_BLOCK;

/// Counts of exceptional projections in one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepCounts {
    /// No root in (−1, 1).
    pub degenerate: u64,
    /// Iteration cap reached.
    pub not_converged: u64,
}

impl std::ops::AddAssign for StepCounts {
    fn add_assign(&mut self, o: Self) {
        self.degenerate += o.degenerate;
        self.not_converged += o.not_converged;
    }
}

/// Plain-loop f64 twin, one (k, j) at a time; writes `err[jj*K + k]`.
pub fn reference(
    inp: &StepInputs<'_, f64>,
    st: &mut StepState<'_, f64>,
    err: &mut [f64],
) -> StepCounts {
    let kk = inp.items;
    let mut counts = StepCounts::default();
    for (jj, &j) in inp.bil.iter().enumerate() {
        let j = j as usize;
        let edges = inp.in_ptr[j] as usize..inp.in_ptr[j + 1] as usize;
        for k in 0..kk {
            let (mut sp, mut sm) = (0.0, 0.0);
            for e in edges.clone() {
                let rx = 2.0 * inp.xa[inp.src[e] as usize * kk + k] - st.x[e * kk + k];
                let rw = 2.0 * inp.wa[e] - st.w[e * kk + k];
                sp += (rx + rw) * (rx + rw);
                sm += (rx - rw) * (rx - rw);
            }
            let nj = j * kk + k;
            let g = inp.metric[j];
            let (c, t, ry) = if inp.mode == MODE_FREE_Y {
                let ry = 2.0 * inp.ya[nj] - st.y[nj];
                (inp.omega * inp.omega / g, inp.omega * ry, ry)
            } else {
                (0.0, st.y[nj], st.y[nj])
            };
            let root = solve_root(sp, sm, c, t);
            let degenerate = root.status == STATUS_DEGENERATE;
            counts.degenerate += degenerate as u64;
            counts.not_converged += (root.status == STATUS_NOT_CONVERGED) as u64;
            let mut e2 = 0.0;
            for e in edges.clone() {
                let o = e * kk + k;
                let xae = inp.xa[inp.src[e] as usize * kk + k];
                let wae = inp.wa[e];
                let rx = 2.0 * xae - st.x[o];
                let rw = 2.0 * wae - st.w[o];
                let (xb, wb) = if degenerate {
                    (rx, rw)
                } else {
                    apply_root(rx, rw, &root)
                };
                st.x[o] += inp.beta * (xb - xae);
                st.w[o] += inp.beta * (wb - wae);
                e2 += (xb - xae).powi(2) + (wb - wae).powi(2);
            }
            if inp.mode == MODE_FREE_Y {
                let yb = if degenerate {
                    ry
                } else {
                    ry - inp.omega * root.u() / g
                };
                let dy = yb - inp.ya[nj];
                st.y[nj] += inp.beta * dy;
                e2 += g * dy * dy;
            }
            if let Some(bm) = inp.bias_mean {
                let db = bm[j] - inp.ba[nj];
                st.b[nj] += inp.beta * db;
                e2 += g * db * db;
            }
            err[jj * kk + k] = e2;
        }
    }
    counts
}

/// CPU backend: bilinear nodes in parallel (their in-edge blocks of x and w
/// are disjoint because edges are sorted by destination), items innermost.
/// Writes each bilinear node's error sum (over items) to `node_err` and
/// returns the total Σ err and the exception counts.
pub fn cpu<T: Real>(
    inp: &StepInputs<'_, T>,
    st: &mut StepState<'_, T>,
    node_err: &mut [f64],
) -> (f64, StepCounts) {
    cpu_at(SimdLevel::current(), inp, st, node_err)
}

/// [`cpu`] with the node loop compiled for `level` (every level gives the
/// same bits; see [`SimdLevel`]).
pub fn cpu_at<T: Real>(
    level: SimdLevel,
    inp: &StepInputs<'_, T>,
    st: &mut StepState<'_, T>,
    node_err: &mut [f64],
) -> (f64, StepCounts) {
    let kk = inp.items;
    node_err.fill(0.0);
    if kk == 0 || inp.bil.is_empty() {
        return (0.0, StepCounts::default());
    }
    let xs = SharedMut::new(st.x);
    let ws = SharedMut::new(st.w);
    let ys = SharedMut::new(st.y);
    let bs = SharedMut::new(st.b);
    let warm_len = st.warm.as_ref().map_or(0, |w| w.len());
    assert!(warm_len == 0 || warm_len == inp.bil.len() * kk);
    let warms = st.warm.as_deref_mut().map(SharedMut::new);
    if let Some(ws) = st.wsum.as_deref() {
        assert_eq!(ws.len(), inp.src.len() * WSUM_PARTS);
    }
    let wsums = st.wsum.as_deref_mut().map(SharedMut::new);
    let layout = st.xsum.as_ref().map(|xs| xs.layout);
    if let Some(xs) = &st.xsum {
        assert_eq!(xs.sums.len(), xs.layout.rows() * kk);
        assert_eq!(xs.layout.edge_row.len(), inp.src.len());
        assert_eq!(
            xs.layout.group_ptr.last().copied(),
            Some(inp.bil.len() as u32)
        );
    }
    let xsums = st.xsum.as_mut().map(|xs| SharedMut::new(&mut *xs.sums));
    let ctx = NodeCtx {
        inp,
        xs: &xs,
        ws: &ws,
        ys: &ys,
        bs: &bs,
        warms: warms.as_ref(),
        wsums: wsums.as_ref(),
        edge_row: layout.map_or(&[], |l| &l.edge_row[..]),
    };
    let work = (inp.in_ptr[inp.in_ptr.len() - 1] as usize) * kk;
    // One task per group of consecutive bilinear nodes: the x-sum layout's
    // groups, else one node each.
    let groups = layout.map_or(inp.bil.len(), |l| l.groups());
    let errs = SharedMut::new(node_err);
    let group = |g: usize| -> StepCounts {
        let (jj0, jj1, mut rows) = match (layout, xsums.as_ref()) {
            (Some(l), Some(sums)) => {
                let (r0, r1) = (l.row_ptr[g] as usize, l.row_ptr[g + 1] as usize);
                // SAFETY: group g alone owns rows r0..r1.
                let rows = unsafe { sums.slice(r0 * kk, (r1 - r0) * kk) };
                rows.fill(T::ZERO);
                let nodes = l.group_ptr[g] as usize..l.group_ptr[g + 1] as usize;
                (nodes.start, nodes.end, Some((rows, r0)))
            }
            _ => (g, g + 1, None),
        };
        // SAFETY: group g alone owns its nodes' entries.
        let errs = unsafe { errs.slice(jj0, jj1 - jj0) };
        let mut counts = StepCounts::default();
        for jj in jj0..jj1 {
            let rows = rows.as_mut().map(|(r, r0)| (&mut **r, *r0));
            let (e, c) = node_at(level, &ctx, jj, inp.bil[jj], rows);
            errs[jj - jj0] = e;
            counts += c;
        }
        counts
    };
    let add = |mut a: StepCounts, b: StepCounts| {
        a += b;
        a
    };
    let counts = if parallel_enough(work) {
        (0..groups)
            .into_par_iter()
            .map(group)
            .reduce(StepCounts::default, add)
    } else {
        (0..groups).map(group).fold(StepCounts::default(), add)
    };
    (node_err.iter().sum(), counts)
}

/// What every node of [`cpu_at`] reads (shared across threads).
struct NodeCtx<'c, 'a, T> {
    inp: &'c StepInputs<'a, T>,
    xs: &'c SharedMut<T>,
    ws: &'c SharedMut<T>,
    ys: &'c SharedMut<T>,
    bs: &'c SharedMut<T>,
    warms: Option<&'c SharedMut<WarmRoot<T>>>,
    wsums: Option<&'c SharedMut<T>>,
    /// [`XSumLayout::edge_row`] when x is summed (else empty).
    edge_row: &'c [u32],
}

simd_dispatch! {
    /// [`node_block`] for a SIMD level.
    fn node_at<T>(
        ctx: &NodeCtx<'_, '_, T>,
        jj: usize,
        j: u32,
        xsum: Option<(&mut [T], usize)>,
    ) -> (f64, StepCounts) = node_block
}

/// One bilinear node over all items: inlined into each SIMD level's copy.
/// `xsum`: its group's rows of x sums and the first row's number.
#[inline(always)]
fn node_block<T: Real>(
    ctx: &NodeCtx<'_, '_, T>,
    jj: usize,
    j: u32,
    xsum: Option<(&mut [T], usize)>,
) -> (f64, StepCounts) {
    let NodeCtx {
        inp,
        xs,
        ws,
        ys,
        bs,
        warms,
        wsums,
        edge_row,
    } = *ctx;
    let (xsum, row0) = match xsum {
        Some((rows, r0)) => (Some(rows), r0),
        None => (None, 0),
    };
    let kk = inp.items;
    let _ftz = FlushDenormals::new();
    let j = j as usize;
    let (e0, e1) = (inp.in_ptr[j] as usize, inp.in_ptr[j + 1] as usize);
    // SAFETY: in-edge blocks and node rows of distinct bilinear nodes are disjoint.
    let x = unsafe { xs.slice(e0 * kk, (e1 - e0) * kk) };
    let w = unsafe { ws.slice(e0 * kk, (e1 - e0) * kk) };
    let y = unsafe { ys.slice(j * kk, kk) };
    let b = unsafe { bs.slice(j * kk, kk) };
    let warm = warms.as_ref().map(|ws| unsafe { ws.slice(jj * kk, kk) });
    let mut wsum = wsums
        .as_ref()
        .map(|ws| unsafe { ws.slice(e0 * WSUM_PARTS, (e1 - e0) * WSUM_PARTS) });
    if let Some(ws) = wsum.as_deref_mut() {
        ws.fill(T::ZERO);
    }
    let mut node = NodeRows {
        inp,
        j,
        e0,
        e1,
        x,
        w,
        y,
        b,
        warm,
        wsum,
        xsum,
        row0,
        edge_row,
        counts: StepCounts::default(),
        err_lanes: [0.0; ROOT_BLOCK],
    };
    // Full blocks get a constant length, so their loops compile without
    // remainder handling; the last, partial block takes the general path.
    let mut k0 = 0;
    while k0 + NODE_BLOCK <= kk {
        item_block(&mut node, k0, NODE_BLOCK);
        k0 += NODE_BLOCK;
    }
    if k0 < kk {
        item_block(&mut node, k0, kk - k0);
    }
    (node.err_lanes.iter().sum(), node.counts)
}

/// Items per block of the CPU node loop: each in-edge row is read in runs
/// this long (several vectors), and the block's scratch lives on the stack.
const NODE_BLOCK: usize = 4 * ROOT_BLOCK;

/// One bilinear node's rows (its in-edges' x and w, its y and b).
struct NodeRows<'r, 'a, T> {
    inp: &'r StepInputs<'a, T>,
    j: usize,
    e0: usize,
    e1: usize,
    x: &'r mut [T],
    w: &'r mut [T],
    y: &'r mut [T],
    b: &'r mut [T],
    warm: Option<&'r mut [WarmRoot<T>]>,
    wsum: Option<&'r mut [T]>,
    /// The group's rows of x sums (see [`XSumLayout`]), from row `row0`.
    xsum: Option<&'r mut [T]>,
    row0: usize,
    edge_row: &'r [u32],
    counts: StepCounts,
    /// Σ err per lane (f64): summed once per node, not once per block.
    err_lanes: [f64; ROOT_BLOCK],
}

/// Items `k0..k0 + n` (n ≤ [`NODE_BLOCK`]) of one node: reflect, project
/// (roots solved [`ROOT_BLOCK`] at a time), update in place.
#[inline(always)]
fn item_block<T: Real>(nd: &mut NodeRows<'_, '_, T>, k0: usize, n: usize) {
    let inp = nd.inp;
    let kk = inp.items;
    let (j, e0, e1) = (nd.j, nd.e0, nd.e1);
    let two = T::from_f64(2.0);
    let half = T::from_f64(0.5);
    let g = inp.metric[j];
    let mut sp = [T::ZERO; NODE_BLOCK];
    let mut sm = [T::ZERO; NODE_BLOCK];
    for (le, e) in (e0..e1).enumerate() {
        let xa = &inp.xa[inp.src[e] as usize * kk + k0..][..n];
        let wa = inp.wa[e];
        let xr = &nd.x[le * kk + k0..][..n];
        let wr = &nd.w[le * kk + k0..][..n];
        for i in 0..n {
            let rx = two * xa[i] - xr[i];
            let rw = two * wa - wr[i];
            sp[i] += (rx + rw) * (rx + rw);
            sm[i] += (rx - rw) * (rx - rw);
        }
    }
    let ya = &inp.ya[j * kk + k0..][..n];
    let mut ry = [T::ZERO; NODE_BLOCK];
    // Lanes past n keep (0, 0, 0, 0): u = 0 at once.
    let mut cs = [T::ZERO; NODE_BLOCK];
    let mut ts = [T::ZERO; NODE_BLOCK];
    if inp.mode == MODE_FREE_Y {
        let c = inp.omega * inp.omega / g;
        for i in 0..n {
            ry[i] = two * ya[i] - nd.y[k0 + i];
            cs[i] = c;
            ts[i] = inp.omega * ry[i];
        }
    } else {
        ts[..n].copy_from_slice(&nd.y[k0..k0 + n]);
    }
    // apply_root as ((r + σ r') + τ r')·k per item, branch-free in the
    // edge loop and bit-identical to it: small roots σ = 0, τ = u;
    // large ones σ = ±1, τ = ∓s; degenerate σ = τ = 0, k = 1 (and u = 0
    // for y, so y' = 2ya − y exactly).
    let mut sig = [T::ZERO; NODE_BLOCK];
    let mut tau = [T::ZERO; NODE_BLOCK];
    let mut kf = [T::ONE; NODE_BLOCK];
    let mut us = [T::ZERO; NODE_BLOCK];
    for r0 in (0..n).step_by(ROOT_BLOCK) {
        let lanes = |v: &[T; NODE_BLOCK]| -> [T; ROOT_BLOCK] {
            v[r0..r0 + ROOT_BLOCK].try_into().expect("ROOT_BLOCK lanes")
        };
        let m = ROOT_BLOCK.min(n - r0);
        let warm = nd.warm.as_deref_mut().map(|w| &mut w[k0 + r0..k0 + r0 + m]);
        let rt = solve_block(m, &lanes(&sp), &lanes(&sm), &lanes(&cs), &lanes(&ts), warm);
        for i in 0..m {
            nd.counts.degenerate += (rt.status[i] == STATUS_DEGENERATE) as u64;
            nd.counts.not_converged += (rt.status[i] == STATUS_NOT_CONVERGED) as u64;
        }
        for i in 0..ROOT_BLOCK {
            let deg = rt.status[i] == STATUS_DEGENERATE;
            let pos = rt.positive[i] != 0;
            let small = rt.s[i] >= half;
            let u = if pos { rt.ua[i] } else { -rt.ua[i] };
            let s = rt.s[i];
            let (sg, ta) = if small {
                (T::ZERO, u)
            } else if pos {
                (T::ONE, -s)
            } else {
                (-T::ONE, s)
            };
            sig[r0 + i] = if deg { T::ZERO } else { sg };
            tau[r0 + i] = if deg { T::ZERO } else { ta };
            kf[r0 + i] = if deg { T::ONE } else { rt.inv_den[i] };
            us[r0 + i] = if deg { T::ZERO } else { u };
        }
    }
    let mut err = [T::ZERO; NODE_BLOCK];
    for (le, e) in (e0..e1).enumerate() {
        let xa = &inp.xa[inp.src[e] as usize * kk + k0..][..n];
        let wa = inp.wa[e];
        let xr = &mut nd.x[le * kk + k0..][..n];
        let wr = &mut nd.w[le * kk + k0..][..n];
        for i in 0..n {
            let rx = two * xa[i] - xr[i];
            let rw = two * wa - wr[i];
            let xb = ((rx + sig[i] * rw) + tau[i] * rw) * kf[i];
            let wb = ((rw + sig[i] * rx) + tau[i] * rx) * kf[i];
            let dx = xb - xa[i];
            let dw = wb - wa;
            xr[i] += inp.beta * dx;
            wr[i] += inp.beta * dw;
            err[i] += dx * dx + dw * dw;
        }
        if let Some(ws) = nd.wsum.as_deref_mut() {
            lane_acc(wr, &mut ws[le * WSUM_PARTS..(le + 1) * WSUM_PARTS]);
        }
        if let Some(rows) = nd.xsum.as_deref_mut() {
            let row = nd.edge_row[e] as usize - nd.row0;
            for (s, &v) in rows[row * kk + k0..][..n].iter_mut().zip(xr.iter()) {
                *s += v;
            }
        }
    }
    if inp.mode == MODE_FREE_Y {
        for i in 0..n {
            let yb = ry[i] - inp.omega * us[i] / g;
            let dy = yb - ya[i];
            nd.y[k0 + i] += inp.beta * dy;
            err[i] += g * dy * dy;
        }
    }
    if let Some(bm) = inp.bias_mean {
        let ba = &inp.ba[j * kk + k0..][..n];
        for i in 0..n {
            let db = bm[j] - ba[i];
            nd.b[k0 + i] += inp.beta * db;
            err[i] += g * db * db;
        }
    }
    // Lanes past n hold zeros; whole lanes keep the sum vectorized.
    for c in err.chunks_exact(ROOT_BLOCK) {
        for (acc, v) in nd.err_lanes.iter_mut().zip(c) {
            *acc += v.to_f64();
        }
    }
}

/// Adds v into [`WSUM_PARTS`] interleaved partial sums (vertical vector
/// adds only; a single running sum would be one long dependency chain).
#[inline(always)]
fn lane_acc<T: Real>(v: &[T], out: &mut [T]) {
    // A local copy: adding into `out` directly compiled to scalar
    // load-add-store chains (no proof that `out` and `v` do not overlap).
    let mut acc: [T; WSUM_PARTS] = (&*out).try_into().expect("WSUM_PARTS lanes");
    let mut chunks = v.chunks_exact(WSUM_PARTS);
    for c in &mut chunks {
        for l in 0..WSUM_PARTS {
            acc[l] += c[l];
        }
    }
    for (l, &r) in chunks.remainder().iter().enumerate() {
        acc[l] += r;
    }
    out.copy_from_slice(&acc);
}

/// Outputs of one fused RRR step.
#[derive(Clone, Debug)]
pub struct StepOut {
    /// Updated x.
    pub x: Vec<f64>,
    /// Updated w.
    pub w: Vec<f64>,
    /// Updated y.
    pub y: Vec<f64>,
    /// Updated b.
    pub b: Vec<f64>,
    /// err [J][K].
    pub err: Vec<f64>,
    /// Each quad's sum of the updated w ([E][K/4]) from the quad variants,
    /// else empty.
    pub w_quads: Vec<f64>,
    /// [degenerate, not converged].
    pub counters: Vec<u32>,
}

/// One fused RRR step (bias consensus given as a per-node mean). Takes
/// [`QUAD`] or [`PAIR`] where the items allow it, as the GPU engine does.
pub fn gpu(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    inp: &StepInputs<'_, f64>,
    x: &[f64],
    w: &[f64],
    y: &[f64],
    b: &[f64],
) -> Result<StepOut> {
    let kernel = crate::gpu::for_items(&KERNEL, &PAIR, &QUAD, inp.items);
    gpu_with(ctx, prec, kernel, inp, x, w, y, b, None)
}

/// One RRR step by a given variant ([`KERNEL`] or [`WIDE`], or their pair
/// or quad variants for an even count or a multiple of 4 items), built with
/// `IN_DEGREE` `degree`: 0 the general walk, else every bilinear node's
/// in-degree, at most [`DEGREE_MAX`]; `None` as the engine builds it, with
/// the nodes' shared in-degree.
#[allow(clippy::too_many_arguments)]
pub fn gpu_with(
    ctx: &Arc<GpuContext>,
    prec: Precision,
    kernel: &Kernel,
    inp: &StepInputs<'_, f64>,
    x: &[f64],
    w: &[f64],
    y: &[f64],
    b: &[f64],
    degree: Option<u32>,
) -> Result<StepOut> {
    let degree = degree.unwrap_or_else(|| shared_in_degree(inp.bil, inp.in_ptr));
    if degree != 0 && shared_in_degree(inp.bil, inp.in_ptr) != degree {
        return Err(Error::Input(format!(
            "the step's fixed in-degree {degree} is not every bilinear node's"
        )));
    }
    let kk = inp.items;
    crate::gpu::check_lanes(kernel, kk)?;
    let j = inp.bil.len();
    let n = inp.metric.len();
    // Feed the bias mean as a single partial per node with items_total = 1.
    let (has_bias, bmean) = match inp.bias_mean {
        Some(m) => (1, m.to_vec()),
        None => (0, vec![0.0; n]),
    };
    let params = ctx.uniform(&Params {
        items: kk as u32,
        bil_nodes: j as u32,
        parts_total: 1,
        mode: inp.mode,
        has_bias,
        items_total: 1,
        quad_sums: 1,
        pad: 0,
    })?;
    let up = |v: &[f64]| ctx.upload_real(v, prec);
    let sc = up(&[inp.beta, inp.omega])?;
    let bil = ctx.upload_u32(inp.bil)?;
    let in_ptr = ctx.upload_u32(inp.in_ptr)?;
    let src = ctx.upload_u32(inp.src)?;
    let metric = up(inp.metric)?;
    let (xb, wb, yb, bb) = (up(x)?, up(w)?, up(y)?, up(b)?);
    let (xa, wa, ya, ba) = (up(inp.xa)?, up(inp.wa)?, up(inp.ya)?, up(inp.ba)?);
    let bpart = up(&bmean)?;
    let err = ctx.alloc(j * kk, Elem::Real(prec))?;
    // The step reads the stop flag of the device convergence check (word 3).
    let counters = ctx.upload_u32(&[0; super::rrr_converge::HEAD])?;
    let quads = kernel.lanes == 4;
    let e = inp.src.len();
    let w_quads = ctx.alloc(if quads { e * kk / 4 } else { 1 }, Elem::Real(prec))?;
    let bufs: [&GpuBuffer; 18] = [
        &params, &sc, &bil, &in_ptr, &src, &metric, &xb, &wb, &xa, &wa, &yb, &ya, &bb, &ba, &bpart,
        &err, &counters, &w_quads,
    ];
    let binds: Vec<_> = bufs.iter().map(|&b| b.into()).collect();
    let d = ctx.prepare_specialized(
        kernel,
        prec,
        &[("IN_DEGREE", degree as f64)],
        &binds,
        threads(kernel, j, kk),
    )?;
    ctx.run_one(&d)?;
    Ok(StepOut {
        x: xb.read_real()?,
        w: wb.read_real()?,
        y: yb.read_real()?,
        b: bb.read_real()?,
        err: err.read_real()?,
        w_quads: if quads { w_quads.read_real()? } else { vec![] },
        counters: counters.read_u32()?[..2].to_vec(),
    })
}
