//! RRR iterations on a wgpu device.
//!
//! Buffers and bind groups are created once; a window of iterations (up
//! to the next convergence check, at most 256) is one submit.
//! The batch is split into item chunks so that no array exceeds the
//! adapter's storage-binding limit (128 MiB on lavapipe): per chunk,
//! `consensus_nodes`, `reduce_rows` (w, and bias reflections) and `rrr_step`
//! run on its own buffers, and every sum over items is written as partial
//! sums into shared `[rows][P_total]` arrays. `normalize_weights` and the
//! final error reduction then run once. With several processes (an MPI
//! run), each holds its share of the batch and the host takes the sums
//! over processes between the kernels: the selection keys, the weight and
//! bias partial sums, and the RRR_err history. RRR_err values land in a
//! device-side history. On one process the device also decides when to
//! stop (`rrr_converge`, at each check): a stopped run's kernels leave the
//! state alone, so windows can be queued before the previous one's RRR_err
//! is read, through copies recorded in its own submit.
//! On hardware GPUs a classifier's training set can stay on the device
//! (`keep_items`): a batch starts from a feed pass there (`rrr_forward`).
//! Small problems on one process run each window of iterations as one
//! dispatch of `rrr_fused` instead, a workgroup per independent block.
//!
//! Memory traffic per (item, edge) and iteration, in elements
//! ([`traffic_model`]):
//! - consensus reads x (1, but only over the out-edges of nodes that are
//!   not data or fixed nodes: those take x from the data);
//! - the step reads x, w and xa twice and writes x, w (8). The cooperative
//!   step for wide nodes (`rrr_step::WIDE`) finds its second pass's rows
//!   in the cache, and its consecutive workgroups are the nodes of one
//!   tile of items, which read the same xa rows: x and w read and written
//!   once (4) and xa once per (item, source node);
//! - the weight consensus reads w (1), or in quad chunks the quad sums of
//!   the updated w that the step writes (¼ written, ¼ read).
//!
//! At most about 10 × 4 bytes in f32; 784-20-10 with the cooperative step
//! and quad sums about 4.6 × 4.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::{BatchEnd, Collective, Consensus, IterReport, Predictions, RrrEngine};
use crate::error::{Error, Result};
use crate::gpu::buffer::Elem;
use crate::gpu::{
    BindRef, Dispatch, GpuBuffer, GpuContext, Kernel, Readback, ReadbackBuffer, Submitted,
    for_items,
};
use crate::kernels::rrr_forward::Feed;
use crate::kernels::select_radix::RadixSelect;
use crate::kernels::{
    class_select, consensus_nodes, normalize_weights, reduce_rows, rrr_converge, rrr_forward,
    rrr_fused, rrr_load, rrr_step,
};
use crate::problem::{NodeStart, RrrProblem, RrrState, StepMode};
use crate::real::Precision;

/// The most device traffic per (item, edge) and iteration the model gives,
/// in elements (see the module doc): × 4 bytes in f32, × 8 in f64.
pub const TRAFFIC_PER_ITEM_EDGE: f64 = 10.0;

/// The traffic model of the step the process's last GPU engine chose.
static TRAFFIC: AtomicU64 = AtomicU64::new(TRAFFIC_PER_ITEM_EDGE.to_bits());

/// Modelled device traffic per (item, edge) and iteration of `p`'s
/// iterations, in elements (see the module doc), per edge of the network:
/// - the step's: 8 per bilinear in-edge, or with the cooperative step 4
///   per in-edge and 1 per distinct source of the bilinear nodes (xa's
///   rows, which a tile's workgroups share: 804 for 784-20-10);
/// - the weight consensus's: 1 (w's rows), or ½ from the step's quad sums;
/// - the consensus's reads of x over the out-edges of the nodes that are
///   not data or fixed nodes (784-20-10: 200 of 15,880 edges).
pub fn traffic_model(p: &RrrProblem, wide_step: bool, quad_sums: bool) -> f64 {
    let (kinds, _) = p.node_codes();
    let out_degree = |i: usize| (p.out_ptr[i + 1] - p.out_ptr[i]) as usize;
    let averaged: usize = (0..p.nodes)
        .filter(|&i| {
            kinds[i] != consensus_nodes::NODE_DATA && kinds[i] != consensus_nodes::NODE_FIXED
        })
        .map(out_degree)
        .sum();
    let edges = p.src.len().max(1) as f64;
    let consensus = averaged as f64 / edges;
    let in_edges = |j: u32| p.in_ptr[j as usize] as usize..p.in_ptr[j as usize + 1] as usize;
    let stepped: usize = p.bil.iter().map(|&j| in_edges(j).len()).sum();
    let step = if wide_step {
        let mut source = vec![false; p.nodes];
        for e in p.bil.iter().flat_map(|&j| in_edges(j)) {
            source[p.src[e] as usize] = true;
        }
        let sources = source.iter().filter(|&&s| s).count();
        (4 * stepped + sources) as f64 / edges
    } else {
        (8 * stepped) as f64 / edges
    };
    let weights = if quad_sums { 0.5 } else { 1.0 };
    step + weights + consensus
}

/// Modelled device traffic per (item, edge) and iteration of the last GPU
/// engine, in elements.
pub fn traffic_per_item_edge() -> f64 {
    f64::from_bits(TRAFFIC.load(Ordering::Relaxed))
}

/// Whether an engine runs the cooperative step: for wide nodes (on
/// lavapipe with two cores it took 784-20-10 from 7.18 to 5.96 s of wall
/// time, for 13% more CPU time); `GRADFREE_STEP=wide` (or `narrow`)
/// forces either.
fn wide_step(p: &RrrProblem) -> bool {
    match std::env::var("GRADFREE_STEP").as_deref() {
        Ok("wide") => true,
        Ok("narrow") => false,
        _ => rrr_step::wide(&p.bil, &p.in_ptr),
    }
}

/// Whether an engine runs whole windows of iterations in one dispatch
/// (`rrr_fused`): where the weight means come from w's rows (one process,
/// one chunk of few items, narrow groups), without class selection or the
/// cooperative step, the adapter binds enough storage buffers, and the
/// problem is small. `GRADFREE_FUSED=1` takes it wherever it is allowed,
/// `8` or `64` too with that many invocations per block, `0` never.
/// On a software adapter, the longest window must also keep each
/// invocation's loops below llvmpipe's limit, and the engine fuses only
/// where one dispatch can run [`MIN_SOFTWARE_WINDOW`] iterations (any
/// number where forced).
fn fused_iterations(
    ctx: &GpuContext,
    p: &RrrProblem,
    items: usize,
    w_rows: bool,
    selecting: bool,
    wide: bool,
    max_window: usize,
) -> bool {
    let allowed = w_rows
        && !selecting
        && !wide
        && max_window >= 1
        && ctx.limits.max_storage_buffers_per_shader_stage >= rrr_fused::STORAGE_BUFFERS;
    match std::env::var("GRADFREE_FUSED").as_deref() {
        Ok("1" | "8" | "64") => allowed,
        Ok("0") => false,
        _ => allowed && rrr_fused::small(items, p.edges()) && max_window >= MIN_SOFTWARE_WINDOW,
    }
}

/// The fewest fused iterations per dispatch worth the fused kernel
/// on a software adapter.
const MIN_SOFTWARE_WINDOW: usize = 16;

/// The fused iterations' dispatches: dispatch i runs iterations
/// i·span … (i + 1)·span − 1 of a window, so that a window of up to
/// HISTORY iterations is one submit however short the span.
struct Fused {
    dispatches: Vec<Dispatch>,
    /// Iterations per dispatch (see [`crate::gpu::SOFTWARE_LOOP_LIMIT`]).
    span: usize,
    /// The window's first iteration and length, written by `iterate`.
    window: GpuBuffer,
    /// [β, Ω, Δ, m], written by `iterate`.
    scalars: GpuBuffer,
    /// The class margin Δ and the activation half-width m.
    margins: [f64; 2],
    _keep: Vec<GpuBuffer>,
}

/// RRR iterations the process has run on devices (every engine).
static ITERATIONS: AtomicU64 = AtomicU64::new(0);

/// RRR iterations the process has run on devices so far: what a summary
/// divides the device's submits and dispatches by.
pub fn rrr_iterations() -> u64 {
    ITERATIONS.load(Ordering::Relaxed)
}

/// Iterations whose RRR_err the device keeps before a readback is forced.
const HISTORY: usize = 256;

/// A submitted window of iterations and the copies of its RRR_err slots
/// and the run's state, to read once it has run.
struct Window {
    submitted: Submitted,
    hist: Readback,
    state: Readback,
    /// The window's first iteration in the call.
    first: usize,
}

/// One item chunk: columns `start..start+items` of every [rows][K] array.
struct Chunk {
    start: usize,
    items: usize,
    x: GpuBuffer,
    w: GpuBuffer,
    y: GpuBuffer,
    b: GpuBuffer,
    data: GpuBuffer,
    /// Given labels.
    given: GpuBuffer,
    /// Effective labels the class nodes use (given, exempted or relabeled).
    labels: GpuBuffer,
    xa: GpuBuffer,
    ya: GpuBuffer,
    ba: GpuBuffer,
    /// Class selection (exemptions/relabeling): keys, then selection.
    d_select: Option<(Dispatch, Dispatch)>,
    d_nodes: Dispatch,
    d_reduce_w: Dispatch,
    /// The same partial sums from the step's quad sums of w ([E][Kc/4],
    /// in quad chunks where the engine takes them).
    d_reduce_wq: Option<Dispatch>,
    d_reduce_b: Option<Dispatch>,
    d_step: Dispatch,
    /// Per-item errors [J][Kc] and their partial sums over items (none with
    /// one chunk: the history reduction then reads `err` directly).
    err: GpuBuffer,
    d_err: Option<Dispatch>,
    /// The chunk's node values and pre-activations ([N][Kc]) of a batch
    /// start, and the dispatch that builds the replicas from them.
    nodes_x: GpuBuffer,
    nodes_y: GpuBuffer,
    d_load: Dispatch,
    _keep: Vec<GpuBuffer>,
}

/// A labelled item set kept on the device (see `RrrEngine::keep_items`):
/// a batch starts from its row numbers by a feed pass on the device.
struct Kept {
    /// Labels of the set, for `labels` of the engine.
    labels: Vec<u32>,
    /// Per chunk: its rows of the set, the feed pass into its node arrays
    /// (then `d_load`), the same pass writing each item's predicted class
    /// instead of its data and labels, and those classes. A pass is one
    /// dispatch per part of the order ([`rrr_forward::order_parts`]).
    rows: Vec<GpuBuffer>,
    d_feed: Vec<Vec<Dispatch>>,
    d_predict: Vec<Vec<Dispatch>>,
    predicted: Vec<GpuBuffer>,
    _keep: Vec<GpuBuffer>,
}

pub(crate) struct GpuRrr {
    ctx: Arc<GpuContext>,
    items: usize,
    edges: usize,
    nodes: usize,
    omega: f64,
    labels: Vec<u32>,
    chunks: Vec<Chunk>,
    wa: GpuBuffer,
    hist: GpuBuffer,
    hist_parts: usize,
    groups: usize,
    counters: GpuBuffer,
    step_scalars: GpuBuffer,
    d_normalize: Dispatch,
    /// Whole windows of iterations in one dispatch, for small problems.
    fused: Option<Fused>,
    /// The final error reduction into each history slot.
    d_err_final: Vec<Dispatch>,
    /// The convergence check after the iterations that end a check.
    d_converge: Vec<Dispatch>,
    /// Where windows copy their RRR_err slots and the run's state, two of
    /// each: at most two windows are in flight.
    window_readbacks: [(ReadbackBuffer, ReadbackBuffer); 2],
    converge_params: GpuBuffer,
    converge_scalars: GpuBuffer,
    /// Partial sums over items of 2b_A − b per node, [N][P_total].
    bpart: GpuBuffer,
    /// Partial sums over items of w per edge, [E][P_total].
    wpart: GpuBuffer,
    /// The model's weights and biases of a batch start.
    model_w: GpuBuffer,
    model_b: GpuBuffer,
    /// Selection keys of the whole batch (every process's items).
    keys: GpuBuffer,
    /// The threshold search of exemptions and relabeling.
    radix: Option<RadixSelect>,
    has_bias: bool,
    parts_total: usize,
    /// The kept item set, once `keep_items` has run.
    kept: Option<Kept>,
    /// The weight normalization sums w's rows itself (no `d_reduce_w`).
    w_rows: bool,
    /// The step's quad sums hold the current w (the last step wrote them,
    /// and nothing has written w since), so the weight consensus reads
    /// them where a chunk has them.
    quad_sums_current: AtomicBool,
    precision: Precision,
    /// In-edge CSR and sources, for the feed pass.
    in_ptr: GpuBuffer,
    src: GpuBuffer,
    /// The processes of the run, this one's first item in the batch and
    /// the batch's items over all processes.
    collective: Arc<dyn Collective>,
    offset: usize,
    total: usize,
    _keep: Vec<GpuBuffer>,
}

/// Whether by iteration `i` of `rep` every group has been below `tol`
/// (RRR_err itself with one group).
fn below_by(rep: &IterReport, i: usize, tol: f64) -> bool {
    if rep.group_errors.is_empty() {
        rep.errors[i] < tol
    } else {
        rep.group_errors
            .iter()
            .all(|g| g[..=i].iter().any(|&e| e < tol))
    }
}

/// Columns `start..start+len` of a row-major [rows][total] array.
fn columns(full: &[f64], total: usize, start: usize, len: usize) -> Vec<f64> {
    if total == 0 {
        return Vec::new();
    }
    full.chunks(total)
        .flat_map(|row| row[start..start + len].iter().copied())
        .collect()
}

/// Writes chunk columns back into a row-major [rows][total] array.
fn put_columns(full: &mut [f64], total: usize, start: usize, len: usize, part: &[f64]) {
    if total == 0 || len == 0 {
        return;
    }
    for (row, src) in full.chunks_mut(total).zip(part.chunks(len)) {
        row[start..start + len].copy_from_slice(src);
    }
}

impl GpuRrr {
    pub(crate) fn new(
        ctx: &Arc<GpuContext>,
        precision: Precision,
        p: &RrrProblem,
        items: usize,
        collective: Arc<dyn Collective>,
    ) -> Result<Self> {
        // With several processes, the partial sums meet on the host between
        // the kernels of an iteration (see `iteration_shared`).
        let share = collective.share_of(items)?;
        let (offset, total) = (share.offset, share.total);
        let (e, n, kk) = (p.edges(), p.nodes, items);
        let (kind_codes, param_codes) = p.node_codes();
        let (select_mode, select_budget) = p.selection.code();
        let j = p.bil.len();
        p.check_groups()?;
        let groups = p.err_groups;
        let real = Elem::Real(precision);
        let eb = precision.bytes() as u64;
        // Items per chunk: the widest [rows][Kc] array must fit one binding.
        let widest = e.max(n).max(j).max(1) as u64;
        let max_bind = ctx.max_binding_bytes();
        let per_chunk = (max_bind / (widest * eb)) as usize;
        if per_chunk == 0 {
            return Err(Error::Limit {
                what: format!("one item of a {e}-edge network"),
                needed: widest * eb,
                limit: max_bind,
            });
        }
        // Whole quads of items per chunk, so that every chunk but the last
        // runs the quad kernels.
        let per_chunk = if per_chunk >= 4 {
            per_chunk / 4 * 4
        } else {
            per_chunk
        };
        let per_chunk = per_chunk.min(kk.max(1));
        let starts: Vec<usize> = (0..kk.max(1)).step_by(per_chunk).collect();
        let parts_of = |c: usize| reduce_rows::parts(per_chunk.min(kk.saturating_sub(starts[c])));
        let parts_total: usize = (0..starts.len()).map(parts_of).sum();
        let hw_bind = ctx.hw_max_binding_bytes();
        if (e.max(n).max(j) * parts_total) as u64 * eb > hw_bind {
            return Err(Error::Limit {
                what: format!("partial sums of {e} edges over {kk} items"),
                needed: (e.max(n).max(j) * parts_total) as u64 * eb,
                limit: hw_bind,
            });
        }
        if starts.len() > 1 {
            log::info!(
                "RRR batch of {kk} items split into {} chunks of ≤ {per_chunk}",
                starts.len()
            );
        }

        let u32buf = |v: &[u32]| ctx.upload_u32(v);
        let model_w = ctx.alloc(e, real)?;
        let model_b = ctx.alloc(n, real)?;
        let out_ptr = u32buf(&p.out_ptr)?;
        let out_edges = u32buf(&p.out_edges)?;
        let kind = u32buf(&kind_codes)?;
        let param = u32buf(&param_codes)?;
        let in_ptr = u32buf(&p.in_ptr)?;
        let src = u32buf(&p.src)?;
        let bil = u32buf(&p.bil)?;
        let group_ptr = u32buf(&p.group_ptr)?;
        let group_edges = u32buf(&p.group_edges)?;
        let metric = ctx.upload_real(&p.metric, precision)?;
        let node_scalars = ctx.upload_real(&[p.class_margin, p.act_margin], precision)?;
        let norm_scalars = ctx.upload_real(&[p.omega], precision)?;
        let step_scalars = ctx.upload_real(&[1.0, p.omega], precision)?;
        let wa = ctx.alloc(e, real)?;
        let wpart = ctx.alloc(e * parts_total, real)?;
        let bpart = ctx.alloc(n * parts_total, real)?;
        let errpart = ctx.alloc(j * parts_total, real)?;
        // Per iteration slot: `groups` rows of partial sums over each group's
        // contiguous block of per-item errors ([J/groups][K], one chunk) or
        // of their partial sums ([J/groups][P_total], several): one
        // reduction fewer per iteration in the common case.
        let single = starts.len() == 1;
        let group_items = if single {
            (j / groups) * kk
        } else {
            (j / groups) * parts_total
        };
        let hist_parts = reduce_rows::parts(group_items);
        let hist = ctx.alloc(HISTORY * groups * hist_parts, real)?;
        let counters = ctx.alloc(rrr_converge::HEAD + groups, Elem::U32)?;
        let selecting = select_mode != class_select::MODE_NONE;
        let keys = ctx.alloc(total.max(1), real)?;
        let radix = if selecting {
            Some(RadixSelect::new(
                ctx,
                precision,
                &keys,
                total,
                select_budget,
            )?)
        } else {
            None
        };
        let select_scalars = ctx.upload_real(&[p.class_margin], precision)?;

        let rp = |rows: usize, items: usize, mode: u32, offset: usize, total: usize| {
            reduce_rows::Params {
                rows: rows as u32,
                items: items as u32,
                parts: reduce_rows::parts(items) as u32,
                mode,
                parts_total: total as u32,
                parts_offset: offset as u32,
                stop_word: rrr_converge::STOPPED as u32,
                unit: 1,
            }
        };
        // A reduction of `rows` rows of `values` values into `parts` partial
        // sums each (`parts(values)`, or of the items where each value sums
        // several).
        let reduce = |u: &GpuBuffer,
                      z: &GpuBuffer,
                      a: &GpuBuffer,
                      out: &GpuBuffer,
                      rows: usize,
                      values: usize,
                      parts: usize| {
            let (kernel, per_part) = reduce_rows::kernel_for(ctx, values);
            ctx.prepare(
                kernel,
                precision,
                &[u.into(), z.into(), a.into(), out.into(), (&counters).into()],
                (rows * parts) as u64 * per_part,
            )
        };

        // One chunk of few items on one process, narrow groups: the weight
        // normalization sums w's rows itself (the same bits as the serial
        // row sums), one dispatch fewer per iteration.
        let wide_groups = normalize_weights::wide(&p.group_ptr);
        let w_rows = single
            && collective.world() == 1
            && kk <= reduce_rows::SERIAL_MAX_ITEMS
            && !wide_groups;
        // Elsewhere, on hardware GPUs, the weight consensus reads the step's
        // quad sums of w in quad chunks: a quarter of w's reads, for a
        // quarter element written by the step. On lavapipe those scattered
        // scalar stores cost more than the reads they save (784-20-10: 4%
        // more wall time). GRADFREE_QUAD_SUMS=1 (or 0) overrides.
        let quad_sums = !w_rows
            && match std::env::var("GRADFREE_QUAD_SUMS").as_deref() {
                Ok("1") => true,
                Ok("0") => false,
                _ => !ctx.summary().software,
            };
        // The kernels are built for the problem's node kinds, step mode,
        // biases and in-degree (WGSL overrides): the others' code is left
        // out.
        let kinds_mask = kind_codes.iter().fold(0u32, |m, &k| m | 1 << k);
        let free_y = p.mode == StepMode::FreeY;
        let node_constants = [("NODE_KINDS", kinds_mask as f64)];
        // Nodes of one small in-degree keep their in-edges' values between
        // the step's passes.
        let in_degree = rrr_step::shared_in_degree(&p.bil, &p.in_ptr);
        let step_constants = [
            ("MAY_FREE_Y", free_y as u8 as f64),
            ("MAY_BIAS", p.has_bias as u8 as f64),
            ("IN_DEGREE", in_degree as f64),
        ];
        let wide_step = wide_step(p);
        let first_quads = quad_sums && per_chunk.min(kk) % 4 == 0 && kk > 0;
        TRAFFIC.store(
            traffic_model(p, wide_step, first_quads).to_bits(),
            Ordering::Relaxed,
        );
        let mut chunks = Vec::with_capacity(starts.len());
        let mut part_offset = 0;
        for (c, &start) in starts.iter().enumerate() {
            let ck = per_chunk.min(kk - start.min(kk));
            // Chunks of a multiple of 4 items take four per invocation, other
            // even ones two.
            let pick =
                |k: &'static Kernel, t: &'static Kernel, q: &'static Kernel| for_items(k, t, q, ck);
            let lanes = pick(&rrr_step::KERNEL, &rrr_step::PAIR, &rrr_step::QUAD).lanes as usize;
            let x = ctx.alloc(e * ck, real)?;
            let w = ctx.alloc(e * ck, real)?;
            let y = ctx.alloc(n * ck, real)?;
            let b = ctx.alloc(n * ck, real)?;
            let data = ctx.alloc(n * ck, real)?;
            let labels = ctx.alloc(ck, Elem::U32)?;
            let given = ctx.alloc(ck, Elem::U32)?;
            let select_params = ctx.uniform(&class_select::Params {
                items: ck as u32,
                offset: (offset + start) as u32,
                items_total: total as u32,
                first_class: p.first_class as u32,
                classes: p.classes as u32,
                mode: select_mode,
                budget: select_budget as u32,
                pad: 0,
            })?;
            let xa = ctx.alloc(n * ck, real)?;
            let ya = ctx.alloc(n * ck, real)?;
            let ba = ctx.alloc(n * ck, real)?;
            let err = ctx.alloc(j * ck, real)?;
            let d_select = if let Some(radix) = &radix {
                let binds: Vec<BindRef<'_>> = vec![
                    (&select_params).into(),
                    (&select_scalars).into(),
                    (&metric).into(),
                    (&y).into(),
                    (&b).into(),
                    (&given).into(),
                    (&keys).into(),
                    (&labels).into(),
                    (&radix.state).into(),
                    (&radix.tie_rank).into(),
                    (&radix.block_ties).into(),
                ];
                Some((
                    ctx.prepare(&class_select::KEYS, precision, &binds, ck as u64)?,
                    ctx.prepare(&class_select::SELECT, precision, &binds, ck as u64)?,
                ))
            } else {
                None
            };
            let node_params = ctx.uniform(&consensus_nodes::Params {
                items: ck as u32,
                nodes: n as u32,
                stop_word: rrr_converge::STOPPED as u32,
                pad: 0,
            })?;
            let d_nodes = ctx.prepare_specialized(
                pick(
                    &consensus_nodes::KERNEL,
                    &consensus_nodes::PAIR,
                    &consensus_nodes::QUAD,
                ),
                precision,
                &node_constants,
                &[
                    (&node_params).into(),
                    (&node_scalars).into(),
                    (&out_ptr).into(),
                    (&out_edges).into(),
                    (&kind).into(),
                    (&param).into(),
                    (&labels).into(),
                    (&x).into(),
                    (&y).into(),
                    (&b).into(),
                    (&data).into(),
                    (&xa).into(),
                    (&ya).into(),
                    (&ba).into(),
                    (&counters).into(),
                ],
                (n * ck / lanes) as u64,
            )?;
            let rw_params =
                ctx.uniform(&rp(e, ck, reduce_rows::MODE_SUM, part_offset, parts_total))?;
            let d_reduce_w = reduce(&rw_params, &w, &w, &wpart, e, ck, parts_of(c))?;
            let chunk_quads = quad_sums && ck % 4 == 0 && ck > 0;
            // One element where unused: bound, never written.
            let w_quads = ctx.alloc(if chunk_quads { e * ck / 4 } else { 1 }, real)?;
            let rq_params = ctx.uniform(&reduce_rows::Params {
                items: (ck / 4) as u32,
                unit: 4,
                ..rp(e, ck, reduce_rows::MODE_SUM, part_offset, parts_total)
            })?;
            let d_reduce_wq = match chunk_quads {
                true => Some(reduce(
                    &rq_params,
                    &w_quads,
                    &w_quads,
                    &wpart,
                    e,
                    ck / 4,
                    parts_of(c),
                )?),
                false => None,
            };
            let rb_params = ctx.uniform(&rp(
                n,
                ck,
                reduce_rows::MODE_REFLECT,
                part_offset,
                parts_total,
            ))?;
            let d_reduce_b = if p.has_bias {
                Some(reduce(&rb_params, &b, &ba, &bpart, n, ck, parts_of(c))?)
            } else {
                None
            };
            let step_params = ctx.uniform(&rrr_step::Params {
                items: ck as u32,
                bil_nodes: j as u32,
                parts_total: parts_total as u32,
                mode: p.mode.code(),
                has_bias: p.has_bias as u32,
                items_total: total as u32,
                quad_sums: chunk_quads as u32,
                pad: 0,
            })?;
            let binds: Vec<BindRef<'_>> = vec![
                (&step_params).into(),
                (&step_scalars).into(),
                (&bil).into(),
                (&in_ptr).into(),
                (&src).into(),
                (&metric).into(),
                (&x).into(),
                (&w).into(),
                (&xa).into(),
                (&wa).into(),
                (&y).into(),
                (&ya).into(),
                (&b).into(),
                (&ba).into(),
                (&bpart).into(),
                (&err).into(),
                (&counters).into(),
                (&w_quads).into(),
            ];
            let step = match wide_step {
                true => pick(&rrr_step::WIDE, &rrr_step::WIDE_PAIR, &rrr_step::WIDE_QUAD),
                false => pick(&rrr_step::KERNEL, &rrr_step::PAIR, &rrr_step::QUAD),
            };
            let d_step = ctx.prepare_specialized(
                step,
                precision,
                &step_constants,
                &binds,
                rrr_step::threads(step, j, ck),
            )?;
            let nodes_x = ctx.alloc(n * ck, real)?;
            let nodes_y = ctx.alloc(n * ck, real)?;
            let load_params = ctx.uniform(&rrr_load::Params {
                items: ck as u32,
                edges: e as u32,
                nodes: n as u32,
                pad: 0,
            })?;
            let d_load = ctx.prepare(
                pick(&rrr_load::KERNEL, &rrr_load::PAIR, &rrr_load::QUAD),
                precision,
                &[
                    (&load_params).into(),
                    (&src).into(),
                    (&model_w).into(),
                    (&model_b).into(),
                    (&nodes_x).into(),
                    (&nodes_y).into(),
                    (&x).into(),
                    (&w).into(),
                    (&y).into(),
                    (&b).into(),
                ],
                ((e + n) * ck / lanes) as u64,
            )?;
            let err_params =
                ctx.uniform(&rp(j, ck, reduce_rows::MODE_SUM, part_offset, parts_total))?;
            let d_err = if single {
                None
            } else {
                Some(reduce(
                    &err_params,
                    &err,
                    &err,
                    &errpart,
                    j,
                    ck,
                    parts_of(c),
                )?)
            };
            part_offset += parts_of(c);
            chunks.push(Chunk {
                start,
                items: ck,
                x,
                w,
                y,
                b,
                data,
                given,
                labels,
                xa,
                ya,
                ba,
                d_select,
                d_nodes,
                d_reduce_w,
                d_reduce_wq,
                d_reduce_b,
                d_step,
                err,
                d_err,
                nodes_x,
                nodes_y,
                d_load,
                _keep: vec![
                    load_params,
                    node_params,
                    rw_params,
                    rq_params,
                    w_quads,
                    rb_params,
                    step_params,
                    err_params,
                    select_params,
                ],
            });
        }
        let norm_params = ctx.uniform(&normalize_weights::Params {
            groups: (p.group_ptr.len() - 1) as u32,
            items_total: total as u32,
            parts_total: parts_total as u32,
            clamp: p.clamp_weights as u32,
            row_items: if w_rows { kk as u32 } else { 0 },
            pad: [0; 3],
        })?;
        let (mut norm_kernel, norm_threads) =
            normalize_weights::kernel_for(&p.group_ptr, wide_groups);
        if w_rows {
            norm_kernel = for_items(
                &normalize_weights::KERNEL,
                &normalize_weights::PAIR,
                &normalize_weights::QUAD,
                kk,
            );
        }
        let d_normalize = ctx.prepare(
            norm_kernel,
            precision,
            &[
                (&norm_params).into(),
                (&norm_scalars).into(),
                (&group_ptr).into(),
                (&group_edges).into(),
                (&wpart).into(),
                (&wa).into(),
                if w_rows { &chunks[0].w } else { &wpart }.into(),
            ],
            norm_threads,
        )?;
        // One prepared reduction per history slot, so that a window of
        // iterations is recorded without writing a uniform between them.
        let mut d_err_final = Vec::with_capacity(HISTORY);
        let mut slot_uniforms = Vec::with_capacity(HISTORY);
        let err_source = if single { &chunks[0].err } else { &errpart };
        for slot in 0..HISTORY {
            let mut params = rp(groups, group_items, reduce_rows::MODE_SUM, 0, hist_parts);
            params.parts_offset = (slot * groups * hist_parts) as u32;
            let uniform = ctx.uniform(&params)?;
            d_err_final.push(reduce(
                &uniform,
                err_source,
                err_source,
                &hist,
                groups,
                group_items,
                hist_parts,
            )?);
            slot_uniforms.push(uniform);
        }
        // The convergence check on the device; `iterate` writes its
        // parameters and threshold.
        let converge_params = ctx.uniform(&rrr_converge::Params {
            groups: groups as u32,
            hist_parts: hist_parts as u32,
            history: HISTORY as u32,
            check_every: 1,
            end: 0,
            pad: [0; 3],
        })?;
        let converge_scalars = ctx.upload_real(&[-1.0], precision)?;
        let d_converge = rrr_converge::dispatches(
            ctx,
            precision,
            &[
                (&converge_params).into(),
                (&converge_scalars).into(),
                (&hist).into(),
                (&counters).into(),
            ],
            groups,
        )?;
        let network = rrr_fused::Network {
            nodes: n,
            src: &p.src,
            dst: &p.dst,
            bil: &p.bil,
            group_ptr: &p.group_ptr,
            group_edges: &p.group_edges,
            err_groups: groups,
            in_ptr: &p.in_ptr,
            out_ptr: &p.out_ptr,
        };
        // The blocks and the loop bound only where the kernel could run.
        let candidate = w_rows && !selecting && !wide_step;
        let mut blocks = match candidate {
            true => rrr_fused::blocks(&network, ctx.max_workgroups_per_dim() as usize),
            false => Vec::new(),
        };
        // The fused kernel skips the node consensus that no phase reads.
        if p.mode == StepMode::Nmf && !p.has_bias {
            rrr_fused::sources_only(&mut blocks, &p.out_ptr);
        }
        let software = ctx.summary().software;
        let fused_kernel = match std::env::var("GRADFREE_FUSED").as_deref() {
            Ok("8") => rrr_fused::kernel_for(true, kk),
            Ok("64") => rrr_fused::kernel_for(false, kk),
            _ => rrr_fused::kernel_for(software, kk),
        };
        let max_window = if !candidate {
            0
        } else if software {
            crate::gpu::SOFTWARE_LOOP_LIMIT
                / rrr_fused::loop_iterations(fused_kernel, &network, &blocks, kk, p.has_bias)
        } else {
            usize::MAX
        };
        let fused = if fused_iterations(ctx, p, kk, w_rows, selecting, wide_step, max_window) {
            let c = &chunks[0];
            let base = rrr_fused::Params {
                items: kk as u32,
                nodes: n as u32,
                bil_nodes: j as u32,
                weight_groups: (p.group_ptr.len() - 1) as u32,
                parts_total: parts_total as u32,
                mode: p.mode.code(),
                has_bias: p.has_bias as u32,
                items_total: total as u32,
                row_items: kk as u32,
                clamp: p.clamp_weights as u32,
                groups: groups as u32,
                hist_parts: hist_parts as u32,
                history: HISTORY as u32,
                group_items: group_items as u32,
                ..Default::default()
            };
            let margins = [p.class_margin, p.act_margin];
            let scalars = ctx.upload_real(&[1.0, p.omega, margins[0], margins[1]], precision)?;
            let window = ctx.uniform(&rrr_fused::Window::default())?;
            let block_count = blocks.len() / rrr_fused::BLOCK_WORDS;
            let blocks = u32buf(&blocks)?;
            let span = max_window.min(HISTORY);
            let mut dispatches = Vec::new();
            let mut keep = vec![blocks];
            for offset in (0..HISTORY).step_by(span) {
                let params = ctx.uniform(&rrr_fused::Params {
                    offset: offset as u32,
                    span: span as u32,
                    ..base
                })?;
                dispatches.push(ctx.prepare_specialized(
                    fused_kernel,
                    precision,
                    &[
                        node_constants[0],
                        step_constants[0],
                        step_constants[1],
                        step_constants[2],
                    ],
                    &[
                        (&params).into(),
                        (&scalars).into(),
                        (&out_ptr).into(),
                        (&out_edges).into(),
                        (&kind).into(),
                        (&param).into(),
                        (&c.labels).into(),
                        (&bil).into(),
                        (&in_ptr).into(),
                        (&src).into(),
                        (&metric).into(),
                        (&group_ptr).into(),
                        (&group_edges).into(),
                        (&c.data).into(),
                        (&keep[0]).into(),
                        (&c.x).into(),
                        (&c.w).into(),
                        (&c.y).into(),
                        (&c.b).into(),
                        (&c.xa).into(),
                        (&c.ya).into(),
                        (&c.ba).into(),
                        (&wa).into(),
                        (&bpart).into(),
                        (&c.err).into(),
                        (&hist).into(),
                        (&counters).into(),
                        (&window).into(),
                    ],
                    (block_count * fused_kernel.workgroup as usize) as u64,
                )?);
                keep.push(params);
            }
            Some(Fused {
                dispatches,
                span,
                window,
                scalars,
                margins,
                _keep: keep,
            })
        } else {
            None
        };
        Ok(GpuRrr {
            ctx: ctx.clone(),
            items: kk,
            edges: e,
            nodes: n,
            omega: p.omega,
            labels: vec![0; kk],
            chunks,
            wa,
            hist,
            hist_parts,
            groups,
            counters,
            step_scalars,
            d_normalize,
            fused,
            d_err_final,
            d_converge,
            window_readbacks: [(); 2].map(|_| {
                (
                    ctx.readback_buffer(HISTORY * groups * hist_parts, real),
                    ctx.readback_buffer(rrr_converge::HEAD, Elem::U32),
                )
            }),
            converge_params,
            converge_scalars,
            bpart,
            wpart,
            model_w,
            model_b,
            keys,
            radix,
            has_bias: p.has_bias,
            parts_total,
            kept: None,
            w_rows,
            quad_sums_current: AtomicBool::new(false),
            precision,
            in_ptr,
            src,
            collective,
            offset,
            total,
            _keep: vec![
                out_ptr,
                out_edges,
                kind,
                param,
                bil,
                group_ptr,
                group_edges,
                metric,
                node_scalars,
                norm_scalars,
                errpart,
                norm_params,
                select_scalars,
            ]
            .into_iter()
            .chain(slot_uniforms)
            .collect(),
        })
    }

    /// The w reduction of chunk `c`: from the step's quad sums where it
    /// has them and they are `current` (a step has run since w was last
    /// written otherwise), else from w's rows.
    fn reduce_w(c: &Chunk, current: bool) -> &Dispatch {
        match &c.d_reduce_wq {
            Some(d) if current => d,
            _ => &c.d_reduce_w,
        }
    }

    /// Each node's bias mean over the batch from its partial sums `raw`
    /// (`bpart`'s [N][P_total]).
    fn bias_means(&self, raw: &[f64]) -> Vec<f64> {
        let pt = self.parts_total;
        let inv = 1.0 / self.total.max(1) as f64;
        (0..self.nodes)
            .map(|i| raw[i * pt..(i + 1) * pt].iter().sum::<f64>() * inv)
            .collect()
    }

    /// The step dispatches of every chunk (and their error sums).
    fn steps(&self) -> Vec<&Dispatch> {
        let mut v = vec![];
        for c in &self.chunks {
            v.push(&c.d_step);
            v.extend(c.d_err.as_ref());
        }
        v
    }

    /// Whether the quad sums of w are current on the device (see
    /// [`Self::reduce_w`]).
    fn sums_current(&self) -> bool {
        self.quad_sums_current.load(Ordering::Relaxed)
    }

    /// The dispatches of PA(z): node consensus, weight partial sums,
    /// normalization; `current` as in [`Self::reduce_w`].
    fn project_a(&self, current: bool) -> Vec<&Dispatch> {
        let mut v: Vec<&Dispatch> = vec![];
        // Every chunk's keys before any selection: selection ranks the whole batch.
        v.extend(
            self.chunks
                .iter()
                .filter_map(|c| c.d_select.as_ref().map(|d| &d.0)),
        );
        v.extend(self.radix.iter().flat_map(|r| &r.dispatches));
        v.extend(
            self.chunks
                .iter()
                .filter_map(|c| c.d_select.as_ref().map(|d| &d.1)),
        );
        for c in &self.chunks {
            v.push(&c.d_nodes);
            if !self.w_rows {
                v.push(Self::reduce_w(c, current));
            }
        }
        v.push(&self.d_normalize);
        v
    }

    fn read_history(&self, count: usize, rep: &mut IterReport) -> Result<()> {
        let per_slot = self.groups * self.hist_parts;
        let raw = self.hist.read_real_range(0, count * per_slot)?;
        let mut sums: Vec<f64> = raw
            .chunks(self.hist_parts)
            .map(|c| c.iter().sum())
            .collect();
        self.collective.allreduce_sum_f64(&mut sums)?;
        for slot in sums.chunks(self.groups) {
            rep.push_group_sums(slot, self.total);
        }
        Ok(())
    }

    /// PA(z) on the device, its sums over items taken over every process.
    fn run_project_a(&self) -> Result<()> {
        if self.collective.world() == 1 {
            let mut rec = self.ctx.recorder();
            rec.dispatches(&self.project_a(self.sums_current()));
            return rec.submit();
        }
        self.select_shared()?;
        let mut rec = self.ctx.recorder();
        for c in &self.chunks {
            rec.dispatches(&[&c.d_nodes, Self::reduce_w(c, self.sums_current())]);
        }
        rec.submit()?;
        self.sum_parts_shared(&self.wpart, self.edges)?;
        let mut rec = self.ctx.recorder();
        rec.dispatches(&[&self.d_normalize]);
        rec.submit()
    }

    /// Exemptions and relabels over the whole batch: this process's keys,
    /// then every process's, then the selection of its own items.
    fn select_shared(&self) -> Result<()> {
        let Some(radix) = &self.radix else {
            return Ok(());
        };
        let mut rec = self.ctx.recorder();
        for c in &self.chunks {
            if let Some((keys, _)) = &c.d_select {
                rec.dispatches(&[keys]);
            }
        }
        rec.submit()?;
        let mine = self.keys.read_real_range(self.offset, self.items)?;
        self.keys
            .write_real(&self.collective.all_gather_f64(&mine)?);
        let mut rec = self.ctx.recorder();
        rec.dispatches(&radix.dispatches.iter().collect::<Vec<_>>());
        for c in &self.chunks {
            if let Some((_, select)) = &c.d_select {
                rec.dispatches(&[select]);
            }
        }
        rec.submit()
    }

    /// Replaces each row's partial sums in `part` ([rows][P_total]) by the
    /// row's sum over every process's items (in the first part; the others
    /// zero, which the kernels add exactly).
    fn sum_parts_shared(&self, part: &GpuBuffer, rows: usize) -> Result<()> {
        let pt = self.parts_total;
        let raw = part.read_real()?;
        let mut sums: Vec<f64> = (0..rows)
            .map(|i| raw[i * pt..(i + 1) * pt].iter().sum())
            .collect();
        self.collective.allreduce_sum_f64(&mut sums)?;
        let mut out = vec![0.0; rows * pt];
        for (i, s) in sums.into_iter().enumerate() {
            out[i * pt] = s;
        }
        part.write_real(&out);
        Ok(())
    }

    /// One iteration with several processes: the device runs the kernels
    /// between the sums, the host takes each sum over the processes.
    fn iteration_shared(&self, slot: usize) -> Result<()> {
        self.run_project_a()?;
        if self.has_bias {
            let mut rec = self.ctx.recorder();
            rec.dispatches(
                &self
                    .chunks
                    .iter()
                    .filter_map(|c| c.d_reduce_b.as_ref())
                    .collect::<Vec<_>>(),
            );
            rec.submit()?;
            self.sum_parts_shared(&self.bpart, self.nodes)?;
        }
        let mut all = self.steps();
        all.push(&self.d_err_final[slot]);
        let mut rec = self.ctx.recorder();
        rec.dispatches(&all);
        rec.submit()?;
        self.quad_sums_current.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a window back: its iterations' RRR_err up to a stop, the stop
    /// if the device has stopped, and the root counters.
    fn take_window(
        &self,
        w: Window,
        rep: &mut IterReport,
        stop_at: &mut Option<usize>,
        counts: &mut [u32; 2],
    ) -> Result<()> {
        let state = w.state.u32(&self.ctx, &w.submitted)?;
        let raw = w.hist.real(&self.ctx, &w.submitted)?;
        if state[rrr_converge::STOPPED] != 0 {
            stop_at.get_or_insert(state[rrr_converge::STOP_AT] as usize);
        }
        *counts = [state[0], state[1]];
        let slots = raw.len() / (self.groups * self.hist_parts);
        let keep = stop_at.map_or(slots, |s| s.saturating_sub(w.first).min(slots));
        for slot in raw.chunks(self.groups * self.hist_parts).take(keep) {
            let sums: Vec<f64> = slot
                .chunks(self.hist_parts)
                .map(|c| c.iter().sum())
                .collect();
            rep.push_group_sums(&sums, self.total);
        }
        Ok(())
    }

    /// `iterate` with several processes: each iteration's sums are taken
    /// over the processes on the host, and RRR_err is read at each check.
    fn iterate_shared(&self, iters: usize, tol: f64, check_every: usize) -> Result<IterReport> {
        let mut rep = IterReport::default();
        let mut pending = 0;
        while rep.iterations < iters {
            // A window ends at a convergence check, the end, or a full history.
            let to_check = if tol > 0.0 {
                check_every - rep.iterations % check_every
            } else {
                usize::MAX
            };
            let window = (iters - rep.iterations)
                .min(HISTORY - pending)
                .min(to_check);
            for slot in pending..pending + window {
                self.iteration_shared(slot)?;
            }
            pending += window;
            rep.iterations += window;
            ITERATIONS.fetch_add(window as u64, Ordering::Relaxed);
            let last = rep.iterations == iters;
            let check = tol > 0.0 && rep.iterations % check_every == 0;
            if last || check || pending == HISTORY {
                let start = rep.errors.len();
                self.read_history(pending, &mut rep)?;
                pending = 0;
                // Stop once, at some iteration of this window, every group has been below tol.
                if tol > 0.0 && (start..rep.errors.len()).any(|i| below_by(&rep, i, tol)) {
                    rep.converged = true;
                    break;
                }
            }
        }
        let c = self.counters.read_u32()?;
        rep.degenerate = c[0] as u64;
        rep.not_converged = c[1] as u64;
        Ok(rep)
    }

    /// The dispatches of one whole iteration on one process, its error
    /// going into history slot `slot`; `current` as in [`Self::reduce_w`].
    fn iteration(&self, slot: usize, current: bool) -> Vec<&Dispatch> {
        let mut all = self.project_a(current);
        all.extend(self.chunks.iter().filter_map(|c| c.d_reduce_b.as_ref()));
        all.extend(self.steps());
        all.push(&self.d_err_final[slot]);
        all
    }

    /// The feed-pass dispatch of one chunk over the kept set's buffers.
    #[allow(clippy::too_many_arguments)]
    fn prepare_feed(
        &self,
        c: &Chunk,
        params: &GpuBuffer,
        set: [&GpuBuffer; 4],
        model: [&GpuBuffer; 2],
        rows: &GpuBuffer,
        predicted: &GpuBuffer,
    ) -> Result<Dispatch> {
        let [scalars, order, inputs, labels] = set;
        let kernel = for_items(
            &rrr_forward::KERNEL,
            &rrr_forward::PAIR,
            &rrr_forward::QUAD,
            c.items,
        );
        self.ctx.prepare(
            kernel,
            self.precision,
            &[
                params.into(),
                scalars.into(),
                order.into(),
                (&self.in_ptr).into(),
                (&self.src).into(),
                model[0].into(),
                model[1].into(),
                inputs.into(),
                labels.into(),
                rows.into(),
                (&c.nodes_x).into(),
                (&c.nodes_y).into(),
                (&c.data).into(),
                (&c.labels).into(),
                (&c.given).into(),
                predicted.into(),
            ],
            (c.items / kernel.lanes as usize) as u64,
        )
    }

    fn kept(&self) -> Result<&Kept> {
        self.kept.as_ref().ok_or_else(|| {
            Error::Input("the engine keeps no item set to start a batch from".into())
        })
    }
}

impl RrrEngine for GpuRrr {
    fn feeds_on_device(&self) -> bool {
        // GRADFREE_DEVICE_FEED=1 (or 0) overrides: tests take the device
        // path on lavapipe.
        match std::env::var("GRADFREE_DEVICE_FEED").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => !self.ctx.summary().software,
        }
    }

    fn keep_items(&mut self, feed: &Feed<'_>, inputs: &[f64], labels: &[u32]) -> Result<bool> {
        let len = labels.len();
        if feed.nodes != self.nodes
            || feed.in_ptr.len() != self.nodes + 1
            || feed.src.len() != self.edges
            || inputs.len() != len * feed.dim
            || feed.first_class + feed.classes > self.nodes
            || feed.dim > feed.first_class
            || feed
                .order
                .iter()
                .any(|&j| (j as usize) < feed.dim || j as usize >= self.nodes)
        {
            return Err(Error::Input(format!(
                "an item set of {} values and {len} labels with {} inputs per item does not fit a feed pass over {} nodes and {} edges",
                inputs.len(),
                feed.dim,
                self.nodes,
                self.edges
            )));
        }
        if self.ctx.summary().software && !rrr_forward::fits_software_loop_limit(feed) {
            log::info!(
                "a feed pass over {} inputs exceeds the software adapter's loop limit: batches start from host feed passes",
                feed.dim
            );
            return Ok(false);
        }
        let bytes = (inputs.len() as u64) * self.precision.bytes() as u64;
        if bytes > self.ctx.max_binding_bytes() {
            log::info!(
                "the training set ({bytes} bytes) exceeds one storage binding: batches start from host feed passes"
            );
            return Ok(false);
        }
        let ctx = &self.ctx;
        let set = [
            ctx.upload_real(&[feed.inv_omega], self.precision)?,
            ctx.upload_u32(feed.order)?,
            ctx.upload_real(inputs, self.precision)?,
            ctx.upload_u32(labels)?,
        ];
        let set_refs = [&set[0], &set[1], &set[2], &set[3]];
        let mut kept = Kept {
            labels: labels.to_vec(),
            rows: vec![],
            d_feed: vec![],
            d_predict: vec![],
            predicted: vec![],
            _keep: vec![],
        };
        let parts = rrr_forward::order_parts(feed, ctx.summary().software);
        for c in &self.chunks {
            let rows = ctx.alloc(c.items, Elem::U32)?;
            let predicted = ctx.alloc(c.items, Elem::U32)?;
            let model = [&self.model_w, &self.model_b];
            let (mut d_feed, mut d_predict) = (vec![], vec![]);
            for part in &parts {
                for (predict, to) in [(0, &mut d_feed), (1, &mut d_predict)] {
                    let params = ctx.uniform(&rrr_forward::Params {
                        items: c.items as u32,
                        dim: feed.dim as u32,
                        order_len: feed.order.len() as u32,
                        first_class: feed.first_class as u32,
                        classes: feed.classes as u32,
                        predict,
                        t_begin: part.start as u32,
                        t_end: part.end as u32,
                    })?;
                    to.push(self.prepare_feed(c, &params, set_refs, model, &rows, &predicted)?);
                    kept._keep.push(params);
                }
            }
            kept.d_feed.push(d_feed);
            kept.d_predict.push(d_predict);
            kept.rows.push(rows);
            kept.predicted.push(predicted);
        }
        kept._keep.extend(set);
        self.kept = Some(kept);
        Ok(true)
    }

    fn load_fed(&mut self, weights: &[f64], biases: &[f64], rows: &[u32]) -> Result<()> {
        let kept = self.kept()?;
        if rows.len() != self.items || weights.len() != self.edges || biases.len() != self.nodes {
            return Err(Error::Input(format!(
                "engine built for {} items, {} edges and {} nodes, batch start has {} items, {} weights and {} biases",
                self.items,
                self.edges,
                self.nodes,
                rows.len(),
                weights.len(),
                biases.len()
            )));
        }
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= kept.labels.len()) {
            return Err(Error::Input(format!(
                "item {r} of a batch is outside the kept set of {} items",
                kept.labels.len()
            )));
        }
        self.model_w.write_real(weights);
        self.model_b.write_real(biases);
        self.quad_sums_current.store(false, Ordering::Relaxed);
        let mut rec = self.ctx.recorder();
        for (c, (buf, feed)) in self.chunks.iter().zip(kept.rows.iter().zip(&kept.d_feed)) {
            buf.write_u32(&rows[c.start..c.start + c.items]);
            rec.dispatches(&feed.iter().chain([&c.d_load]).collect::<Vec<_>>());
        }
        rec.submit()?;
        self.labels = rows.iter().map(|&r| kept.labels[r as usize]).collect();
        Ok(())
    }

    fn predict_queued(&mut self, weights: &[f64], biases: &[f64]) -> Result<Predictions> {
        let kept = self.kept()?;
        if weights.len() != self.edges || biases.len() != self.nodes {
            return Err(Error::Input(format!(
                "a model of {} weights and {} biases for {} edges and {} nodes",
                weights.len(),
                biases.len(),
                self.edges,
                self.nodes
            )));
        }
        self.model_w.write_real(weights);
        self.model_b.write_real(biases);
        let mut rec = self.ctx.recorder();
        rec.dispatches(&kept.d_predict.iter().flatten().collect::<Vec<_>>());
        // Copied in the same submit, into buffers of this call's own: the
        // next batch's passes may rewrite `predicted` before they are read.
        let reads: Vec<_> = self
            .chunks
            .iter()
            .zip(&kept.predicted)
            .map(|(c, p)| {
                let into = self.ctx.readback_buffer(c.items, Elem::U32);
                rec.readback(p, 0, c.items, &into)
            })
            .collect();
        let after = rec.submit_indexed()?;
        let (ctx, items) = (self.ctx.clone(), self.items);
        Ok(Predictions::queued(move || {
            let mut out = Vec::with_capacity(items);
            for r in reads {
                out.extend(r.u32(&ctx, &after)?);
            }
            Ok(out)
        }))
    }

    fn load(&mut self, s: &RrrState) -> Result<()> {
        let kk = self.items;
        if s.items != kk {
            return Err(Error::Input(format!(
                "engine built for {kk} items, state has {}",
                s.items
            )));
        }
        s.validate_shape(self.edges, self.nodes)?;
        self.quad_sums_current.store(false, Ordering::Relaxed);
        for c in &self.chunks {
            let cols = |v: &[f64]| columns(v, kk, c.start, c.items);
            c.x.write_real(&cols(&s.x));
            c.w.write_real(&cols(&s.w));
            c.y.write_real(&cols(&s.y));
            c.b.write_real(&cols(&s.b));
            c.data.write_real(&cols(&s.data));
            c.labels.write_u32(&s.labels[c.start..c.start + c.items]);
            c.given.write_u32(&s.labels[c.start..c.start + c.items]);
        }
        self.labels = s.labels.clone();
        Ok(())
    }

    fn load_nodes(&mut self, start: &NodeStart) -> Result<()> {
        let kk = self.items;
        if start.items != kk {
            return Err(Error::Input(format!(
                "engine built for {kk} items, batch start has {}",
                start.items
            )));
        }
        start.validate_shape(self.edges, self.nodes)?;
        self.quad_sums_current.store(false, Ordering::Relaxed);
        self.model_w.write_real(&start.weights);
        self.model_b.write_real(&start.biases);
        let mut rec = self.ctx.recorder();
        for c in &self.chunks {
            let cols = |v: &[f64]| columns(v, kk, c.start, c.items);
            c.nodes_x.write_real(&cols(&start.x));
            c.nodes_y.write_real(&cols(&start.y));
            c.data.write_real(&cols(&start.data));
            c.labels
                .write_u32(&start.labels[c.start..c.start + c.items]);
            c.given.write_u32(&start.labels[c.start..c.start + c.items]);
            rec.dispatches(&[&c.d_load]);
        }
        rec.submit()?;
        self.labels = start.labels.clone();
        Ok(())
    }

    fn iterate(
        &mut self,
        iters: usize,
        beta: f64,
        tol: f64,
        check_every: usize,
    ) -> Result<IterReport> {
        self.step_scalars.write_real(&[beta, self.omega]);
        self.counters
            .write_u32(&vec![0; rrr_converge::HEAD + self.groups]);
        let check_every = check_every.clamp(1, HISTORY);
        if self.collective.world() > 1 {
            return self.iterate_shared(iters, tol, check_every);
        }
        let stopping = tol > 0.0;
        if stopping {
            self.converge_params.write_uniform(&rrr_converge::Params {
                groups: self.groups as u32,
                hist_parts: self.hist_parts as u32,
                history: HISTORY as u32,
                check_every: check_every as u32,
                end: iters as u32,
                pad: [0; 3],
            });
            self.converge_scalars
                .write_real(&[tol * tol * self.total as f64]);
        }
        if let Some(f) = &self.fused {
            let [margin, half] = f.margins;
            f.scalars.write_real(&[beta, self.omega, margin, half]);
        }
        // Windows of iterations, one submit each, up to the next check
        // when the run may stop. The device checks convergence itself, and
        // once stopped the iterations queued after it change nothing: on
        // hardware the next window is submitted before this one's RRR_err
        // and state (copies recorded in its submit) are read, so the device
        // never waits for the host, at the cost of at most one window of
        // no-op iterations after a stop. Software adapters pay about 60 µs
        // per dispatch even for a no-op, so there the host reads each
        // window of a run that may stop before it submits the next.
        // GRADFREE_RUN_AHEAD=1 (or 0) overrides: tests run ahead on lavapipe.
        let ahead = match std::env::var("GRADFREE_RUN_AHEAD").as_deref() {
            Ok("1") => 1,
            Ok("0") => 0,
            _ if stopping && self.ctx.summary().software => 0,
            _ => 1,
        };
        let mut rep = IterReport::default();
        let mut queued: std::collections::VecDeque<Window> = Default::default();
        let (mut done, mut stop_at, mut windows) = (0, None, 0);
        let mut counts = [0, 0];
        // Whether the quad sums of w hold the current w at the next
        // recorded iteration; stored once its window is submitted.
        let mut current = self.sums_current();
        while done < iters && stop_at.is_none() {
            let first_slot = done % HISTORY;
            let to_check = if stopping {
                check_every - done % check_every
            } else {
                HISTORY
            };
            let window = (iters - done).min(to_check).min(HISTORY - first_slot);
            let mut all: Vec<&Dispatch> = vec![];
            if let Some(f) = &self.fused {
                // Written before this window's submit, after the previous
                // one's. A window ends at the latest at the next check.
                f.window.write_uniform(&rrr_fused::Window {
                    first: done as u32,
                    count: window as u32,
                    pad: [0; 2],
                });
                all.extend(&f.dispatches[..window.div_ceil(f.span)]);
                // The fused kernel writes w without quad sums.
                current = false;
                let end = done + window;
                if stopping && (end % check_every == 0 || end == iters) {
                    all.extend(&self.d_converge);
                }
            } else {
                for i in done..done + window {
                    all.extend(self.iteration(i % HISTORY, current));
                    current = true;
                    if stopping && ((i + 1) % check_every == 0 || i + 1 == iters) {
                        all.extend(&self.d_converge);
                    }
                }
            }
            let per_slot = self.groups * self.hist_parts;
            let mut rec = self.ctx.recorder();
            rec.dispatches(&all);
            // Window n's copies are read before window n + 2 reuses their buffers.
            let (hist_to, state_to) = &self.window_readbacks[windows % 2];
            windows += 1;
            let hist = rec.readback(
                &self.hist,
                first_slot * per_slot,
                window * per_slot,
                hist_to,
            );
            let state = rec.readback(&self.counters, 0, rrr_converge::HEAD, state_to);
            let submitted = rec.submit_indexed()?;
            self.quad_sums_current.store(current, Ordering::Relaxed);
            queued.push_back(Window {
                submitted,
                hist,
                state,
                first: done,
            });
            done += window;
            while queued.len() > ahead {
                let w = queued.pop_front().expect("a queued window");
                self.take_window(w, &mut rep, &mut stop_at, &mut counts)?;
            }
        }
        while let Some(w) = queued.pop_front() {
            self.take_window(w, &mut rep, &mut stop_at, &mut counts)?;
        }
        // Later projections (the batch's consensus) run again.
        if stop_at.is_some() {
            self.counters
                .write_u32(&vec![0; rrr_converge::HEAD + self.groups]);
        }
        rep.iterations = stop_at.unwrap_or(done);
        rep.converged = stop_at.is_some();
        ITERATIONS.fetch_add(rep.iterations as u64, Ordering::Relaxed);
        rep.degenerate = counts[0] as u64;
        rep.not_converged = counts[1] as u64;
        Ok(rep)
    }

    fn state(&mut self) -> Result<RrrState> {
        let (e, n, kk) = (self.edges, self.nodes, self.items);
        let mut s = RrrState {
            items: kk,
            x: vec![0.0; e * kk],
            w: vec![0.0; e * kk],
            y: vec![0.0; n * kk],
            b: vec![0.0; n * kk],
            data: vec![0.0; n * kk],
            labels: self.labels.clone(),
        };
        for c in &self.chunks {
            put_columns(&mut s.x, kk, c.start, c.items, &c.x.read_real()?);
            put_columns(&mut s.w, kk, c.start, c.items, &c.w.read_real()?);
            put_columns(&mut s.y, kk, c.start, c.items, &c.y.read_real()?);
            put_columns(&mut s.b, kk, c.start, c.items, &c.b.read_real()?);
            put_columns(&mut s.data, kk, c.start, c.items, &c.data.read_real()?);
        }
        Ok(s)
    }

    fn bias_consensus(&mut self) -> Result<Vec<f64>> {
        Ok(self.bias_means(&self.bpart.read_real()?))
    }

    fn batch_end(&mut self, labels: bool) -> Result<BatchEnd> {
        // With several processes the sums meet on the host between kernels.
        if self.collective.world() > 1 {
            return crate::engine::rrr::batch_end_by_calls(self, labels);
        }
        let ctx = self.ctx.clone();
        let real = Elem::Real(self.precision);
        let (e, n, pt) = (self.edges, self.nodes, self.parts_total);
        let mut rec = ctx.recorder();
        rec.dispatches(&self.project_a(self.sums_current()));
        let w_to = ctx.readback_buffer(e, real);
        let b_to = ctx.readback_buffer(n * pt, real);
        let w = rec.readback(&self.wa, 0, e, &w_to);
        let b = rec.readback(&self.bpart, 0, n * pt, &b_to);
        let mut label_reads = vec![];
        if labels {
            for c in &self.chunks {
                let to = ctx.readback_buffer(c.items, Elem::U32);
                label_reads.push(rec.readback(&c.labels, 0, c.items, &to));
            }
        }
        let submitted = rec.submit_indexed()?;
        let weights = w.real(&ctx, &submitted)?;
        let biases = self.bias_means(&b.real(&ctx, &submitted)?);
        let mut used = Vec::with_capacity(if labels { self.items } else { 0 });
        for r in label_reads {
            used.extend(r.u32(&ctx, &submitted)?);
        }
        Ok(BatchEnd {
            weights,
            biases,
            labels: used,
        })
    }

    fn labels_used(&mut self) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.items);
        for c in &self.chunks {
            out.extend(c.labels.read_u32()?);
        }
        out.truncate(self.items);
        Ok(out)
    }

    fn consensus_weights(&mut self) -> Result<Vec<f64>> {
        self.run_project_a()?;
        self.wa.read_real()
    }

    fn consensus(&mut self) -> Result<Consensus> {
        self.run_project_a()?;
        let (n, kk) = (self.nodes, self.items);
        let mut out = Consensus {
            x: vec![0.0; n * kk],
            w: self.wa.read_real()?,
            y: vec![0.0; n * kk],
            b: vec![0.0; n * kk],
        };
        for c in &self.chunks {
            put_columns(&mut out.x, kk, c.start, c.items, &c.xa.read_real()?);
            put_columns(&mut out.y, kk, c.start, c.items, &c.ya.read_real()?);
            put_columns(&mut out.b, kk, c.start, c.items, &c.ba.read_real()?);
        }
        Ok(out)
    }
}
