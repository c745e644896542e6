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
// four items, loading x, w and xa as vec4, and solves each item's root.
// Mirrors src/kernels/rrr_step.rs.

// Item c's root from the step's vectors of roots and its sign mask.
fn item_root(ua: itemv, s: itemv, inv_den: itemv, positive: u32, c: u32) -> Root {
    return Root(item_at(ua, c), item_at(s, c), item_at(inv_den, c), ((positive >> c) & 1u) != 0u, STATUS_OK);
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
@group(0) @binding(10) var<storage, read_write> y: array<real>;
@group(0) @binding(11) var<storage, read> ya: array<real>;
@group(0) @binding(12) var<storage, read_write> b: array<real>;
@group(0) @binding(13) var<storage, read> ba: array<real>;
@group(0) @binding(14) var<storage, read> bpart: array<real>;
@group(0) @binding(15) var<storage, read_write> err: array<real>;
@group(0) @binding(16) var<storage, read_write> counters: array<atomic<u32>, 2>;

@compute @workgroup_size(64)
fn rrr_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kk = params.items;
    let kq = kk / LANE_ITEMS;
    if (idx >= kq * params.bil_nodes) {
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
    let g = metric[j];
    // Each item's root, kept as vectors and bit masks (no arrays, which a
    // software adapter keeps in memory).
    var r_ua = itemv(0.0);
    var r_s = itemv(0.0);
    var r_inv = itemv(0.0);
    var ry = itemv(0.0);
    var positive = 0u;
    var degenerate = 0u;
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let nj = j * kk + q * LANE_ITEMS + c;
        var cy = real(0.0);
        var t = y[nj];
        var ryc = t;
        if (params.mode == 1u) {
            ryc = 2.0 * ya[nj] - y[nj];
            cy = omega * omega / g;
            t = omega * ryc;
        }
        let root = solve_root(item_at(sp, c), item_at(sm, c), cy, t);
        r_ua = item_set(r_ua, c, root.ua);
        r_s = item_set(r_s, c, root.s);
        r_inv = item_set(r_inv, c, root.inv_den);
        ry = item_set(ry, c, ryc);
        positive |= select(0u, 1u, root.positive) << c;
        if (root.status == STATUS_DEGENERATE) {
            degenerate |= 1u << c;
            atomicAdd(&counters[0], 1u);
        } else if (root.status == STATUS_NOT_CONVERGED) {
            atomicAdd(&counters[1], 1u);
        }
    }
    var e2 = itemv(0.0);
    for (var e = e0; e < e1; e++) {
        let o = e * kq + q;
        let xae = xa[src[e] * kq + q];
        let wae = wa[e];
        let rx = 2.0 * xae - x[o];
        let rw = 2.0 * wae - w[o];
        var px = rx;
        var pw = rw;
        for (var c = 0u; c < LANE_ITEMS; c++) {
            if (((degenerate >> c) & 1u) == 0u) {
                let pb = apply_root(item_at(rx, c), item_at(rw, c), item_root(r_ua, r_s, r_inv, positive, c));
                px = item_set(px, c, pb.x);
                pw = item_set(pw, c, pb.y);
            }
        }
        let dx = px - xae;
        let dw = pw - wae;
        x[o] += beta * dx;
        w[o] += beta * dw;
        e2 += dx * dx + dw * dw;
    }
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let k = q * LANE_ITEMS + c;
        let nj = j * kk + k;
        var ek = item_at(e2, c);
        if (params.mode == 1u) {
            var yb = item_at(ry, c);
            if (((degenerate >> c) & 1u) == 0u) {
                yb -= omega * root_u(item_root(r_ua, r_s, r_inv, positive, c)) / g;
            }
            let dy = yb - ya[nj];
            y[nj] += beta * dy;
            ek += g * dy * dy;
        }
        if (params.has_bias != 0u) {
            var s = real(0.0);
            let pt = params.parts_total;
            for (var p = 0u; p < pt; p++) {
                s += bpart[j * pt + p];
            }
            let db = s / real(params.items_total) - ba[nj];
            b[nj] += beta * db;
            ek += g * db * db;
        }
        err[jj * kk + k] = ek;
    }
}
