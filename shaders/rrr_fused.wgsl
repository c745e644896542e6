// A window of RRR iterations of a small problem in one dispatch, one
// workgroup per block of the network that no edge, weight group or error
// group crosses (the 20 starts of a batched LEDM run are 20 blocks; a
// classifier is one), storage barriers between the phases of each
// iteration:
//   node consensus                      (consensus_nodes' consensus_at)
//   weight consensus from w's rows      (normalize_weights' normalize_group)
//   and the bias partial sums           (reduce_rows' serial_sum)
//   the step                            (rrr_step's step_at)
//   the errors into the history slot    (reduce_rows' serial_sum)
// Every element is computed by the same functions as in those kernels, so
// the state takes the same bits; the sums over items are the serial
// kernel's item by item, except a block's errors where its step elements
// are one error group: each lane sums its elements' as the step returns
// them, and one lane the lanes' sums (the separate error reduction may
// take quads or a tree too, so RRR_err agrees to rounding). A window ends
// where a convergence check is due, which rrr_converge then runs; a
// stopped run's window returns at once. A window may be split over
// several dispatches of one submit (params' offset and span), each under
// llvmpipe's loop limit (see rrr_fused.rs). Problems of a few thousand
// (item, edge) pairs per iteration pay the cost of a dispatch once per
// window instead of four times per iteration.
// Mirrors src/kernels/rrr_fused.rs.

//!entry
struct FusedParams {
    items: u32,
    nodes: u32,
    bil_nodes: u32,
    weight_groups: u32,
    // Partial sums per node of the bias sums (one chunk: the items' parts).
    parts_total: u32,
    mode: u32,
    has_bias: u32,
    items_total: u32,
    // = items: the weight means come from w's rows.
    row_items: u32,
    clamp: u32,
    // Error groups, the history's partial sums per group and its slots.
    groups: u32,
    hist_parts: u32,
    history: u32,
    // Per-item errors of a group (its rows of the history reduction).
    group_items: u32,
    // This dispatch's part of the window: its first iteration there, and
    // at most how many it runs.
    offset: u32,
    span: u32,
}

// The window: its first iteration in the call, and its length.
struct FusedWindow {
    first: u32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: FusedParams;
// [β, Ω, class margin Δ, activation half-width m]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> out_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> out_edges: array<u32>;
@group(0) @binding(4) var<storage, read> node_kind: array<u32>;
@group(0) @binding(5) var<storage, read> node_param: array<u32>;
@group(0) @binding(6) var<storage, read> labels: array<u32>;
@group(0) @binding(7) var<storage, read> bil: array<u32>;
@group(0) @binding(8) var<storage, read> in_ptr: array<u32>;
@group(0) @binding(9) var<storage, read> src: array<u32>;
@group(0) @binding(10) var<storage, read> metric: array<real>;
@group(0) @binding(11) var<storage, read> group_ptr: array<u32>;
@group(0) @binding(12) var<storage, read> group_edges: array<u32>;
@group(0) @binding(13) var<storage, read> data: array<itemv>;
// Per workgroup, its block's first and end node, bilinear node, weight
// group and error group.
@group(0) @binding(14) var<storage, read> blocks: array<u32>;
@group(0) @binding(15) var<storage, read_write> x: array<itemv>;
@group(0) @binding(16) var<storage, read_write> w: array<itemv>;
@group(0) @binding(17) var<storage, read_write> y: array<itemv>;
@group(0) @binding(18) var<storage, read_write> b: array<itemv>;
@group(0) @binding(19) var<storage, read_write> xa: array<itemv>;
@group(0) @binding(20) var<storage, read_write> ya: array<itemv>;
@group(0) @binding(21) var<storage, read_write> ba: array<itemv>;
@group(0) @binding(22) var<storage, read_write> wa: array<real>;
@group(0) @binding(23) var<storage, read_write> bpart: array<real>;
@group(0) @binding(24) var<storage, read_write> err: array<itemv>;
@group(0) @binding(25) var<storage, read_write> hist: array<real>;
// The run's state (rrr_converge): counts, check progress, stop flag.
@group(0) @binding(26) var<storage, read_write> counters: array<atomic<u32>>;
@group(0) @binding(27) var<uniform> window: FusedWindow;

// What serial_sum sums: the bias reflections 2b_A − b, or the errors.
const SUM_BIAS: u32 = 0u;
const SUM_ERR: u32 = 1u;

var<workgroup> fused_stop: u32;
// Each lane's sum of the errors of its step elements (one error group),
// in alternate halves on alternate iterations: a half is written again
// only after the next iteration's workgroupBarrier, which orders it after
// lane 0's reads.
var<workgroup> fused_err: array<real, 128>;

fn w_row(i: u32) -> itemv {
    return w[i];
}

// Unused: the weight means come from w's rows (row_items > 0).
fn w_partial(i: u32) -> real {
    return 0.0;
}

// Unused: the normalization reads w's rows, not quad sums.
fn keep_w_sum(o: u32, wn: itemv) {}

fn reduce_value(which: u32, mode: u32, i: u32) -> itemv {
    if (which == SUM_ERR) {
        return err[i];
    }
    return 2.0 * ba[i] - b[i];
}

// A window of iterations over the block at word `blk` of `blocks`, by
// `lanes` invocations.
fn fused_window(blk: u32, lid: u32, lanes: u32) {
    // A stopped run leaves its state alone (read once, uniformly: the
    // flag changes only between windows).
    if (lid == 0u) {
        fused_stop = atomicLoad(&counters[3]);
    }
    if (workgroupUniformLoad(&fused_stop) != 0u || blk >= arrayLength(&blocks)) {
        return;
    }
    let kq = params.items / LANE_ITEMS;
    let per_part = CHUNK / LANE_ITEMS;
    let gq = params.group_items / LANE_ITEMS;
    let slots = params.groups * params.hist_parts;
    let nodes = vec2<u32>(blocks[blk], blocks[blk + 1u]);
    let bils = vec2<u32>(blocks[blk + 2u], blocks[blk + 3u]);
    let wgroups = vec2<u32>(blocks[blk + 4u], blocks[blk + 5u]);
    let egroups = vec2<u32>(blocks[blk + 6u], blocks[blk + 7u]);
    let pt = params.parts_total;
    let hp = params.hist_parts;
    // Nobody reads ya or ba in NMF mode without biases: free and
    // non-negative nodes write xa alone.
    let x_only = !(MAY_FREE_Y && params.mode == 1u) && !(MAY_BIAS && params.has_bias != 0u);
    // A block whose step elements are one error group's (of one part):
    // its lanes keep their errors' sums, which make the group's.
    let one_group = egroups.y == egroups.x + 1u && hp == 1u
        && egroups.x * gq == bils.x * kq && gq == (bils.y - bils.x) * kq;
    let first = window.first + params.offset;
    let count = min(params.span, window.count - min(window.count, params.offset));
    for (var it = 0u; it < count; it++) {
        for (var idx = nodes.x * kq + lid; idx < nodes.y * kq; idx += lanes) {
            consensus_at(idx, kq, scalars[2], scalars[3], x_only);
        }
        storageBarrier();
        for (var gi = wgroups.x + lid; gi < wgroups.y; gi += lanes) {
            normalize_group(gi, scalars[1]);
        }
        if (MAY_BIAS && params.has_bias != 0u) {
            for (var t = nodes.x * pt + lid; t < nodes.y * pt; t += lanes) {
                let r = t / pt;
                let p = t - r * pt;
                let end = min(kq, (p + 1u) * per_part);
                bpart[t] = serial_sum(SUM_BIAS, 1u, r * kq, p * per_part, end);
            }
        }
        storageBarrier();
        var lane_err = itemv(0.0);
        for (var idx = bils.x * kq + lid; idx < bils.y * kq; idx += lanes) {
            lane_err += step_at(idx, kq);
        }
        let slot = (first + it) % params.history;
        if (one_group) {
            let half = (it & 1u) * 64u;
            fused_err[half + lid] = items_sum(lane_err);
            workgroupBarrier();
            if (lid == 0u) {
                var total = real(0.0);
                for (var l = 0u; l < lanes; l++) {
                    total += fused_err[half + l];
                }
                hist[slot * slots + egroups.x] = total;
            }
        }
        storageBarrier();
        for (var t = egroups.x * hp + lid; !one_group && t < egroups.y * hp; t += lanes) {
            let g = t / hp;
            let p = t - g * hp;
            let end = min(gq, (p + 1u) * per_part);
            hist[slot * slots + t] = serial_sum(SUM_ERR, 0u, g * gq, p * per_part, end);
        }
        storageBarrier();
    }
}

@compute @workgroup_size(64)
fn rrr_fused(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    fused_window((wid.y * nwg.x + wid.x) * 8u, lid, 64u);
}

// One SIMD group of llvmpipe (8 f32 lanes of 256 bits) per block: a
// software adapter then never switches between a workgroup's groups at
// the barriers.
@compute @workgroup_size(8)
fn rrr_fused_lanes8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    fused_window((wid.y * nwg.x + wid.x) * 8u, lid, 8u);
}
