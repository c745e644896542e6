// Weight consensus with side constraints, one invocation per group
// (normalize_weights) or one workgroup per group (normalize_groups) (the
// in-edges of a node for classifiers, the out-edges of a code node for NMF):
// mean over the batch from partial sums, optional clamp at 0 with the
// all-nonpositive fallback (Ω at the first largest unclamped mean), then
// rescale to norm Ω. With row_items set, the means come from w's rows
// themselves (one chunk of few items: one dispatch fewer per iteration).
// Mirrors src/kernels/normalize_weights.rs.

// The functions below read params' row_items, items_total, parts_total
// and clamp, group_ptr and group_edges, write wa, and take w's rows and
// partial sums from w_row and w_partial (globals and accessors of the
// including shader).

// An edge's mean over the batch, from its partial sums, or from its row of
// w summed as reduce_rows_serial sums it (the same bits).
fn edge_mean(e: u32) -> real {
    var s = real(0.0);
    if (params.row_items > 0u) {
        let kq = params.row_items / LANE_ITEMS;
        var acc = itemv(0.0);
        for (var q = 0u; q < kq; q++) {
            acc += w_row(e * kq + q);
        }
        s += items_sum(acc);
    } else {
        let pt = params.parts_total;
        for (var p = 0u; p < pt; p++) {
            s += w_partial(e * pt + p);
        }
    }
    return s * (1.0 / real(params.items_total));
}

// Group gi's consensus, serially: means, clamp, rescale to norm omega.
fn normalize_group(gi: u32, omega: real) {
    let a = group_ptr[gi];
    let b = group_ptr[gi + 1u];
    if (b == a) {
        return;
    }
    var wmax = real(0.0);
    var imax = a;
    var sumsq = real(0.0);
    for (var i = a; i < b; i++) {
        let e = group_edges[i];
        var v = edge_mean(e);
        if (i == a || v > wmax) {
            wmax = v;
            imax = i;
        }
        if (params.clamp != 0u) {
            v = max(v, 0.0);
        }
        wa[e] = v;
        sumsq += v * v;
    }
    if ((params.clamp != 0u && wmax <= 0.0) || sumsq == 0.0) {
        for (var i = a; i < b; i++) {
            wa[group_edges[i]] = 0.0;
        }
        wa[group_edges[imax]] = omega;
        return;
    }
    let scale = omega / sqrt(sumsq);
    for (var i = a; i < b; i++) {
        let e = group_edges[i];
        wa[e] = wa[e] * scale;
    }
}

//!entry
struct NormParams {
    groups: u32,
    items_total: u32,
    parts_total: u32,
    clamp: u32,
    // > 0: sum each edge's w over its `row_items` items in `rows` ([E][K],
    // one chunk) instead of reading partial sums: the row sums fused in.
    row_items: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: NormParams;
// [Ω]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> group_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> group_edges: array<u32>;
@group(0) @binding(4) var<storage, read> partial: array<real>;
@group(0) @binding(5) var<storage, read_write> wa: array<real>;
@group(0) @binding(6) var<storage, read> rows: array<itemv>;

fn w_row(i: u32) -> itemv {
    return rows[i];
}

fn w_partial(i: u32) -> real {
    return partial[i];
}

@compute @workgroup_size(64)
fn normalize_weights(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let gi = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (gi >= params.groups) {
        return;
    }
    normalize_group(gi, scalars[0]);
}

const NONE: u32 = 0xffffffffu;
const LANES: u32 = 64u;

var<workgroup> s_sumsq: array<real, 64>;
var<workgroup> s_max: array<real, 64>;
var<workgroup> s_imax: array<u32, 64>;

// One workgroup per group, lanes over its edges: each lane takes the
// means, clamp and squares of every 64th edge, then a tree gives the
// group's norm and first largest mean. For wide groups (a node's 784
// in-edges); narrow ones go faster one invocation per group.
@compute @workgroup_size(64)
fn normalize_groups(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let gi = wid.y * nwg.x + wid.x;
    if (gi >= params.groups) {
        return;
    }
    let a = group_ptr[gi];
    let b = group_ptr[gi + 1u];
    var wmax = real(0.0);
    var imax = NONE;
    var sumsq = real(0.0);
    for (var i = a + lid; i < b; i += LANES) {
        let e = group_edges[i];
        var v = edge_mean(e);
        if (imax == NONE || v > wmax) {
            wmax = v;
            imax = i;
        }
        if (params.clamp != 0u) {
            v = max(v, 0.0);
        }
        wa[e] = v;
        sumsq += v * v;
    }
    s_sumsq[lid] = sumsq;
    s_max[lid] = wmax;
    s_imax[lid] = imax;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off >>= 1u) {
        if (lid < off) {
            s_sumsq[lid] += s_sumsq[lid + off];
            let oi = s_imax[lid + off];
            let mi = s_imax[lid];
            let om = s_max[lid + off];
            // The first largest: a larger mean, or an equal one at a smaller index.
            if (oi != NONE && (mi == NONE || om > s_max[lid] || (om == s_max[lid] && oi < mi))) {
                s_max[lid] = om;
                s_imax[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let total = s_sumsq[0];
    let gmax = s_max[0];
    let gimax = s_imax[0];
    if (b == a) {
        return;
    }
    let omega = scalars[0];
    if ((params.clamp != 0u && gmax <= 0.0) || total == 0.0) {
        for (var i = a + lid; i < b; i += LANES) {
            wa[group_edges[i]] = 0.0;
        }
        // The lane that cleared it sets it, so the writes stay in order.
        if ((gimax - a) % LANES == lid) {
            wa[group_edges[gimax]] = omega;
        }
        return;
    }
    let scale = omega / sqrt(total);
    for (var i = a + lid; i < b; i += LANES) {
        let e = group_edges[i];
        wa[e] = wa[e] * scale;
    }
}
