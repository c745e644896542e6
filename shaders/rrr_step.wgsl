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

// The functions below read and write the step's arrays as globals of the
// including shader: bil, in_ptr, src, metric, x, w, xa, wa, y, ya, b, ba,
// bpart, err and counters, scalars = [β, Ω, …] and params' mode, has_bias,
// parts_total and items_total, and call its keep_w_sum(o, w) with each
// updated w.

// Whether a pipeline may run mode 1 (y free) and biases, fixed when it is
// built: NMF's compile without that code (a software adapter runs a
// uniform branch's code with its lanes masked off).
override MAY_FREE_Y: bool = true;
override MAY_BIAS: bool = true;

// The y side of node j at quad q: y's reflection, and the root's c and t.
struct NodeY {
    ry: itemv,
    cy: real,
    t: itemv,
}

fn node_y(nq: u32, g: real, omega: real) -> NodeY {
    let yq = y[nq];
    if (MAY_FREE_Y && params.mode == 1u) {
        let ry = 2.0 * ya[nq] - yq;
        return NodeY(ry, omega * omega / g, omega * ry);
    }
    return NodeY(yq, 0.0, yq);
}

// |r_x + r_w|² and |r_x − r_w|² over in-edges first, first + stride, … < e1.
struct EdgeSums {
    sp: itemv,
    sm: itemv,
}

fn edge_sums(first: u32, e1: u32, stride: u32, q: u32, kq: u32) -> EdgeSums {
    var s = EdgeSums(itemv(0.0), itemv(0.0));
    for (var e = first; e < e1; e += stride) {
        let o = e * kq + q;
        let rx = 2.0 * xa[src[e] * kq + q] - x[o];
        let rw = 2.0 * wa[e] - w[o];
        s.sp += (rx + rw) * (rx + rw);
        s.sm += (rx - rw) * (rx - rw);
    }
    return s;
}

// Each item's root as (σ, τ, k) (root_form) and u; held = 1 for a
// degenerate item, which keeps its reflection.
struct Form {
    sig: itemv,
    tau: itemv,
    kin: itemv,
    ru: itemv,
    held: itemv,
}

// The second pass over the same in-edges: PB's output, z += β(PB − a),
// and Σ |PB − a|² over the edges. keep_w_sum (of the including shader)
// sees each updated w.
fn edge_update(first: u32, e1: u32, stride: u32, q: u32, kq: u32, f: Form) -> itemv {
    let beta = scalars[0];
    let keep = f.held > itemv(0.5);
    var e2 = itemv(0.0);
    for (var e = first; e < e1; e += stride) {
        let o = e * kq + q;
        let xae = xa[src[e] * kq + q];
        let wae = wa[e];
        let rx = 2.0 * xae - x[o];
        let rw = 2.0 * wae - w[o];
        let px = select(((rx + f.sig * rw) - f.tau * rw) * f.kin, rx, keep);
        let pw = select(((rw + f.sig * rx) - f.tau * rx) * f.kin, rw, keep);
        let dx = px - xae;
        let dw = pw - wae;
        x[o] += beta * dx;
        let wn = w[o] + beta * dw;
        w[o] = wn;
        keep_w_sum(o, wn);
        e2 += dx * dx + dw * dw;
    }
    return e2;
}

// Node j's y (mode 1) and bias updates, and its error at (jj, q) from the
// edges' part e2, written to err and returned.
fn node_finish(j: u32, jj: u32, q: u32, kq: u32, ny: NodeY, f: Form, e2: itemv) -> itemv {
    let beta = scalars[0];
    let omega = scalars[1];
    let g = metric[j];
    let nq = j * kq + q;
    let keep = f.held > itemv(0.5);
    var ek = e2;
    if (MAY_FREE_Y && params.mode == 1u) {
        let yb = select(ny.ry - omega * f.ru / g, ny.ry, keep);
        let dy = yb - ya[nq];
        y[nq] += beta * dy;
        ek += g * dy * dy;
    }
    if (MAY_BIAS && params.has_bias != 0u) {
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
    return ek;
}

// Each item's root from the edge sums and the y side (counting the
// degenerate and unconverged roots).
fn node_form(s: EdgeSums, ny: NodeY) -> Form {
    // Each item's root, kept as vectors (no arrays, which a software
    // adapter keeps in memory).
    var f = Form(itemv(0.0), itemv(0.0), itemv(1.0), itemv(0.0), itemv(0.0));
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let root = solve_root(item_at(s.sp, c), item_at(s.sm, c), ny.cy, item_at(ny.t, c));
        if (root.status == STATUS_DEGENERATE) {
            f.held = item_set(f.held, c, 1.0);
            atomicAdd(&counters[0], 1u);
        } else {
            let r = root_form(root);
            f.sig = item_set(f.sig, c, r.x);
            f.tau = item_set(f.tau, c, r.y);
            f.kin = item_set(f.kin, c, r.z);
            f.ru = item_set(f.ru, c, root_u(root));
            if (root.status == STATUS_NOT_CONVERGED) {
                atomicAdd(&counters[1], 1u);
            }
        }
    }
    return f;
}

// Every bilinear node's in-degree where they share one of at most
// DEGREE_MAX (0 where not), fixed when the pipeline is built: the step
// then keeps each in-edge's values between its two passes (a fixed count
// of loads that the compiler holds in registers) instead of reading them
// twice.
override IN_DEGREE: u32 = 0u;
const DEGREE_MAX: u32 = 8u;

fn step_at_fixed(idx: u32, kq: u32) -> itemv {
    let jj = idx / kq;
    let q = idx - jj * kq;
    let j = bil[jj];
    let e0 = in_ptr[j];
    var xs: array<itemv, DEGREE_MAX>;
    var ws: array<itemv, DEGREE_MAX>;
    var xas: array<itemv, DEGREE_MAX>;
    var was: array<real, DEGREE_MAX>;
    var s = EdgeSums(itemv(0.0), itemv(0.0));
    for (var i = 0u; i < IN_DEGREE; i++) {
        let e = e0 + i;
        let o = e * kq + q;
        xs[i] = x[o];
        ws[i] = w[o];
        xas[i] = xa[src[e] * kq + q];
        was[i] = wa[e];
        let rx = 2.0 * xas[i] - xs[i];
        let rw = 2.0 * was[i] - ws[i];
        s.sp += (rx + rw) * (rx + rw);
        s.sm += (rx - rw) * (rx - rw);
    }
    let ny = node_y(j * kq + q, metric[j], scalars[1]);
    let f = node_form(s, ny);
    // edge_update's expressions, on the kept values (one function for
    // both, taking the values as arguments, made the batched LEDM starts
    // 4% slower on lavapipe).
    let beta = scalars[0];
    let keep = f.held > itemv(0.5);
    var e2 = itemv(0.0);
    for (var i = 0u; i < IN_DEGREE; i++) {
        let o = (e0 + i) * kq + q;
        let xae = xas[i];
        let wae = was[i];
        let rx = 2.0 * xae - xs[i];
        let rw = 2.0 * wae - ws[i];
        let px = select(((rx + f.sig * rw) - f.tau * rw) * f.kin, rx, keep);
        let pw = select(((rw + f.sig * rx) - f.tau * rx) * f.kin, rw, keep);
        let dx = px - xae;
        let dw = pw - wae;
        x[o] = xs[i] + beta * dx;
        let wn = ws[i] + beta * dw;
        w[o] = wn;
        keep_w_sum(o, wn);
        e2 += dx * dx + dw * dw;
    }
    return node_finish(j, jj, q, kq, ny, f, e2);
}

// The narrow step at (bilinear node jj = idx / kq, quad q = idx % kq):
// both passes over the node's in-edges by one invocation. Returns the
// element's error (also written to err).
fn step_at(idx: u32, kq: u32) -> itemv {
    if (IN_DEGREE != 0u) {
        return step_at_fixed(idx, kq);
    }
    let jj = idx / kq;
    let q = idx - jj * kq;
    let j = bil[jj];
    let e0 = in_ptr[j];
    let e1 = in_ptr[j + 1u];
    let s = edge_sums(e0, e1, 1u, q, kq);
    let ny = node_y(j * kq + q, metric[j], scalars[1]);
    let f = node_form(s, ny);
    return node_finish(j, jj, q, kq, ny, f, edge_update(e0, e1, 1u, q, kq, f));
}

//!entry
struct StepParams {
    items: u32,
    bil_nodes: u32,
    parts_total: u32,
    mode: u32,
    has_bias: u32,
    items_total: u32,
    quad_sums: u32,
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
// [E][K/4]: each quad's sum of the updated w, the weight consensus's input
// in place of w's rows (a quarter of the reads), written where
// params.quad_sums is set.
@group(0) @binding(17) var<storage, read_write> wquad: array<real>;

fn keep_w_sum(o: u32, wn: itemv) {
    if (LANE_ITEMS == 4u && params.quad_sums != 0u) {
        wquad[o] = items_sum(wn);
    }
}

@compute @workgroup_size(64)
fn rrr_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kq = params.items / LANE_ITEMS;
    // A stopped run leaves its state alone.
    if (idx >= kq * params.bil_nodes || atomicLoad(&counters[3]) != 0u) {
        return;
    }
    _ = step_at(idx, kq);
}

// The cooperative variant for wide nodes: one workgroup per (bilinear
// node, tile of two items or quads), each half of its 64 lanes over the
// node's in-edges for one of them. A lane reads a row's two neighbouring
// items or quads together with its twin lane of the other half (whole
// 32-byte sectors of the item-fastest [rows][K] arrays), and the second
// pass finds the rows the first read in the cache, so x, w and xa cross
// from memory once. Consecutive workgroups are the nodes of one tile,
// which gather the same xa rows. The sums over in-edges are a tree over
// the half's lanes (rounding differs from the one-lane walk); the roots
// are solved by the first LANE_ITEMS lanes of each half.
var<workgroup> wide_p: array<itemv, 64>;
var<workgroup> wide_m: array<itemv, 64>;
// Per half, field (σ, τ, k, u, held) and item.
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
    // An odd last quad leaves the second half without one: it walks no
    // edges, joins the barriers and writes nothing.
    let valid = tile * 2u + half < kq;
    let q = min(tile * 2u + half, kq - 1u);
    let j = bil[jj];
    let e0 = in_ptr[j];
    let e1 = select(e0, in_ptr[j + 1u], valid);
    let part = edge_sums(e0 + l, e1, 32u, q, kq);
    wide_p[lid] = part.sp;
    wide_m[lid] = part.sm;
    wide_sums(lid);
    let sp = wide_p[h0];
    let sm = wide_m[h0];
    let ny = node_y(j * kq + q, metric[j], scalars[1]);
    if (l < LANE_ITEMS) {
        let root = solve_root(item_at(sp, l), item_at(sm, l), ny.cy, item_at(ny.t, l));
        var r = vec3<real>(0.0, 0.0, 1.0);
        var u = real(0.0);
        var held = real(0.0);
        if (root.status == STATUS_DEGENERATE) {
            held = 1.0;
            if (valid) {
                atomicAdd(&counters[0], 1u);
            }
        } else {
            r = root_form(root);
            u = root_u(root);
            if (root.status == STATUS_NOT_CONVERGED && valid) {
                atomicAdd(&counters[1], 1u);
            }
        }
        let at = half * 20u + l;
        wide_form[at] = r.x;
        wide_form[at + 4u] = r.y;
        wide_form[at + 8u] = r.z;
        wide_form[at + 12u] = u;
        wide_form[at + 16u] = held;
    }
    workgroupBarrier();
    var f = Form(itemv(0.0), itemv(0.0), itemv(1.0), itemv(0.0), itemv(0.0));
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let at = half * 20u + c;
        f.sig = item_set(f.sig, c, wide_form[at]);
        f.tau = item_set(f.tau, c, wide_form[at + 4u]);
        f.kin = item_set(f.kin, c, wide_form[at + 8u]);
        f.ru = item_set(f.ru, c, wide_form[at + 12u]);
        f.held = item_set(f.held, c, wide_form[at + 16u]);
    }
    wide_p[lid] = edge_update(e0 + l, e1, 32u, q, kq, f);
    wide_m[lid] = itemv(0.0);
    wide_sums(lid);
    if (l == 0u && valid) {
        _ = node_finish(j, jj, q, kq, ny, f, wide_p[h0]);
    }
}
