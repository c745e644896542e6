// The fused RRR step at every (item k, bilinear node j), after the A
// projections (xa, ya, ba, wa) are known:
//   reflect  r = 2a - z                     (x, w per in-edge; y)
//   project  b = PB(r)                      (bilinear, metric g_j on y)
//   update   z += beta (b - a)              (x, w, y; bias from its consensus)
//   error    err[j][k] = |b - a|^2_metric   (reduced by reduce_rows)
// One pass over the in-edges builds |r_x ± r_w|^2, a second applies the root;
// z is updated in place, so PB's output is never stored.
// mode 0 = NMF (y holds the fixed data, c = 0); mode 1 = y free (Ω, g_j).
// The quad variant (LANE_ITEMS = 4) walks the in-edges once per pass for
// four items, loading every [rows][K] array as vec4, and solves each
// item's root in turn.
// Mirrors src/kernels/rrr_step.rs.

// apply_root's three forms as one: PB maps (rx, rw) to
//   k · ((rx + σ·rw) − τ·rw, (rw + σ·rx) − τ·rx)
// with σ = u, τ = 0 where s ≥ ½, and σ = ±1, τ = ±s below (positive,
// negative root). The products by ±1 and the sums with 0 are exact, so
// these are apply_root's values (up to the sign of a zero), and the edge
// pass is vector arithmetic over the items without a branch per item.
// Returns (σ, τ, k).
fn root_form(r: Root) -> vec3<real> {
    if (r.s >= 0.5) {
        return vec3<real>(root_u(r), 0.0, r.inv_den);
    }
    if (r.positive) {
        return vec3<real>(1.0, r.s, r.inv_den);
    }
    return vec3<real>(-1.0, -r.s, r.inv_den);
}

//!entry
struct StepParams {
    items: u32,
    bil_nodes: u32,
    parts_total: u32,
    mode: u32,
    has_bias: u32,
    items_total: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: StepParams;
// [beta, Ω]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> bil: array<u32>;
@group(0) @binding(3) var<storage, read> in_ptr: array<u32>;
@group(0) @binding(4) var<storage, read> src: array<u32>;
@group(0) @binding(5) var<storage, read> metric: array<real>;
@group(0) @binding(6) var<storage, read_write> x: array<itemv>;
@group(0) @binding(7) var<storage, read_write> w: array<itemv>;
@group(0) @binding(8) var<storage, read> xa: array<itemv>;
@group(0) @binding(9) var<storage, read> wa: array<real>;
@group(0) @binding(10) var<storage, read_write> y: array<itemv>;
@group(0) @binding(11) var<storage, read> ya: array<itemv>;
@group(0) @binding(12) var<storage, read_write> b: array<itemv>;
@group(0) @binding(13) var<storage, read> ba: array<itemv>;
@group(0) @binding(14) var<storage, read> bpart: array<real>;
@group(0) @binding(15) var<storage, read_write> err: array<itemv>;
// [degenerate, not converged, …, stopped (rrr_converge), …]
@group(0) @binding(16) var<storage, read_write> counters: array<atomic<u32>>;

@compute @workgroup_size(64)
fn rrr_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kk = params.items;
    let kq = kk / LANE_ITEMS;
    // A stopped run leaves its state alone.
    if (idx >= kq * params.bil_nodes || atomicLoad(&counters[3]) != 0u) {
        return;
    }
    let jj = idx / kq;
    let q = idx - jj * kq;
    let j = bil[jj];
    let e0 = in_ptr[j];
    let e1 = in_ptr[j + 1u];
    let beta = scalars[0];
    let omega = scalars[1];
    var sp = itemv(0.0);
    var sm = itemv(0.0);
    for (var e = e0; e < e1; e++) {
        let o = e * kq + q;
        let rx = 2.0 * xa[src[e] * kq + q] - x[o];
        let rw = 2.0 * wa[e] - w[o];
        sp += (rx + rw) * (rx + rw);
        sm += (rx - rw) * (rx - rw);
    }
    // The (node, item) values of this invocation: y's reflection and the
    // root's c and t, as vectors.
    let nq = j * kq + q;
    let g = metric[j];
    var ry = y[nq];
    var cy = real(0.0);
    var t = ry;
    if (params.mode == 1u) {
        ry = 2.0 * ya[nq] - ry;
        cy = omega * omega / g;
        t = omega * ry;
    }
    // Each item's root as its (σ, τ, k) and u, kept as vectors (no arrays,
    // which a software adapter keeps in memory); degenerate items keep
    // their reflection (`held` = 1).
    var sig = itemv(0.0);
    var tau = itemv(0.0);
    var kin = itemv(1.0);
    var ru = itemv(0.0);
    var held = itemv(0.0);
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let root = solve_root(item_at(sp, c), item_at(sm, c), cy, item_at(t, c));
        if (root.status == STATUS_DEGENERATE) {
            held = item_set(held, c, 1.0);
            atomicAdd(&counters[0], 1u);
        } else {
            let f = root_form(root);
            sig = item_set(sig, c, f.x);
            tau = item_set(tau, c, f.y);
            kin = item_set(kin, c, f.z);
            ru = item_set(ru, c, root_u(root));
            if (root.status == STATUS_NOT_CONVERGED) {
                atomicAdd(&counters[1], 1u);
            }
        }
    }
    let keep = held > itemv(0.5);
    var e2 = itemv(0.0);
    for (var e = e0; e < e1; e++) {
        let o = e * kq + q;
        let xae = xa[src[e] * kq + q];
        let wae = wa[e];
        let rx = 2.0 * xae - x[o];
        let rw = 2.0 * wae - w[o];
        let px = select(((rx + sig * rw) - tau * rw) * kin, rx, keep);
        let pw = select(((rw + sig * rx) - tau * rx) * kin, rw, keep);
        let dx = px - xae;
        let dw = pw - wae;
        x[o] += beta * dx;
        w[o] += beta * dw;
        e2 += dx * dx + dw * dw;
    }
    var ek = e2;
    if (params.mode == 1u) {
        let yb = select(ry - omega * ru / g, ry, keep);
        let dy = yb - ya[nq];
        y[nq] += beta * dy;
        ek += g * dy * dy;
    }
    if (params.has_bias != 0u) {
        // Node j's bias consensus: its partial sums over items, added once.
        var bias_sum = real(0.0);
        let pt = params.parts_total;
        for (var p = 0u; p < pt; p++) {
            bias_sum += bpart[j * pt + p];
        }
        let db = bias_sum / real(params.items_total) - ba[nq];
        b[nq] += beta * db;
        ek += g * db * db;
    }
    err[jj * kq + q] = ek;
}

// The cooperative variant for wide nodes (hardware GPUs): one workgroup
// per (bilinear node, tile of two items or quads), each half of its 64
// lanes over the node's in-edges for one of them. A lane reads a row's two
// neighbouring items or quads together with its twin lane of the other
// half (whole 32-byte sectors of the item-fastest [rows][K] arrays), and
// the second pass finds the rows the first read in the cache, so x, w and
// xa cross from memory once. Consecutive workgroups are the nodes of one
// tile, which gather the same xa rows. The sums over in-edges are a tree
// over the half's lanes (rounding differs from the one-lane walk); the
// roots are solved by the first LANE_ITEMS lanes of each half.
var<workgroup> wide_p: array<itemv, 64>;
var<workgroup> wide_m: array<itemv, 64>;
// Per half, field (σ, τ, k, u, held; see root_form) and item.
var<workgroup> wide_form: array<real, 40>;
var<workgroup> wide_stop: u32;

// Tree sums over each half's 32 lanes of `wide_p` and `wide_m` (every
// lane calls it; the totals land in lanes 0 and 32).
fn wide_sums(lid: u32) {
    workgroupBarrier();
    for (var s = 16u; s > 0u; s >>= 1u) {
        if (lid % 32u < s) {
            wide_p[lid] += wide_p[lid + s];
            wide_m[lid] += wide_m[lid + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64)
fn rrr_step_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.y * nwg.x + wid.x;
    let kq = params.items / LANE_ITEMS;
    let nodes = params.bil_nodes;
    // A stopped run leaves its state alone (read once, uniformly).
    if (lid == 0u) {
        wide_stop = atomicLoad(&counters[3]);
    }
    let stopped = workgroupUniformLoad(&wide_stop);
    if (g >= (kq + 1u) / 2u * nodes || stopped != 0u) {
        return;
    }
    let tile = g / nodes;
    let jj = g - tile * nodes;
    let half = lid / 32u;
    let l = lid % 32u;
    let h0 = half * 32u;
    // An odd last quad leaves the second half without one: it reads the
    // first half's and writes nothing.
    let valid = tile * 2u + half < kq;
    let q = min(tile * 2u + half, kq - 1u);
    let j = bil[jj];
    let e0 = in_ptr[j];
    let e1 = in_ptr[j + 1u];
    let beta = scalars[0];
    let omega = scalars[1];
    var sp = itemv(0.0);
    var sm = itemv(0.0);
    for (var e = e0 + l; e < e1; e += 32u) {
        let o = e * kq + q;
        let rx = 2.0 * xa[src[e] * kq + q] - x[o];
        let rw = 2.0 * wa[e] - w[o];
        sp += (rx + rw) * (rx + rw);
        sm += (rx - rw) * (rx - rw);
    }
    wide_p[lid] = sp;
    wide_m[lid] = sm;
    wide_sums(lid);
    sp = wide_p[h0];
    sm = wide_m[h0];
    let nq = j * kq + q;
    let g_j = metric[j];
    var ry = y[nq];
    var cy = real(0.0);
    var t = ry;
    if (params.mode == 1u) {
        ry = 2.0 * ya[nq] - ry;
        cy = omega * omega / g_j;
        t = omega * ry;
    }
    if (l < LANE_ITEMS) {
        let root = solve_root(item_at(sp, l), item_at(sm, l), cy, item_at(t, l));
        var f = vec3<real>(0.0, 0.0, 1.0);
        var u = real(0.0);
        var held = real(0.0);
        if (root.status == STATUS_DEGENERATE) {
            held = 1.0;
            if (valid) {
                atomicAdd(&counters[0], 1u);
            }
        } else {
            f = root_form(root);
            u = root_u(root);
            if (root.status == STATUS_NOT_CONVERGED && valid) {
                atomicAdd(&counters[1], 1u);
            }
        }
        let at = half * 20u + l;
        wide_form[at] = f.x;
        wide_form[at + 4u] = f.y;
        wide_form[at + 8u] = f.z;
        wide_form[at + 12u] = u;
        wide_form[at + 16u] = held;
    }
    workgroupBarrier();
    var sig = itemv(0.0);
    var tau = itemv(0.0);
    var kin = itemv(1.0);
    var ru = itemv(0.0);
    var held = itemv(0.0);
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let at = half * 20u + c;
        sig = item_set(sig, c, wide_form[at]);
        tau = item_set(tau, c, wide_form[at + 4u]);
        kin = item_set(kin, c, wide_form[at + 8u]);
        ru = item_set(ru, c, wide_form[at + 12u]);
        held = item_set(held, c, wide_form[at + 16u]);
    }
    let keep = held > itemv(0.5);
    var e2 = itemv(0.0);
    for (var e = e0 + l; e < e1; e += 32u) {
        let o = e * kq + q;
        let xae = xa[src[e] * kq + q];
        let wae = wa[e];
        let rx = 2.0 * xae - x[o];
        let rw = 2.0 * wae - w[o];
        let px = select(((rx + sig * rw) - tau * rw) * kin, rx, keep);
        let pw = select(((rw + sig * rx) - tau * rx) * kin, rw, keep);
        let dx = px - xae;
        let dw = pw - wae;
        if (valid) {
            x[o] += beta * dx;
            w[o] += beta * dw;
        }
        e2 += dx * dx + dw * dw;
    }
    wide_p[lid] = e2;
    wide_m[lid] = itemv(0.0);
    wide_sums(lid);
    if (l != 0u || !valid) {
        return;
    }
    var ek = wide_p[h0];
    if (params.mode == 1u) {
        let yb = select(ry - omega * ru / g_j, ry, keep);
        let dy = yb - ya[nq];
        y[nq] += beta * dy;
        ek += g_j * dy * dy;
    }
    if (params.has_bias != 0u) {
        var bias_sum = real(0.0);
        let pt = params.parts_total;
        for (var p = 0u; p < pt; p++) {
            bias_sum += bpart[j * pt + p];
        }
        let db = bias_sum / real(params.items_total) - ba[nq];
        b[nq] += beta * db;
        ek += g_j * db * db;
    }
    err[jj * kq + q] = ek;
}
