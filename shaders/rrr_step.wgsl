// The fused RRR step at every (item k, bilinear node j), after the A
// projections (xa, ya, ba, wa) are known:
//   reflect  r = 2a - z                     (x, w per in-edge; y)
//   project  b = PB(r)                      (bilinear, metric g_j on y)
//   update   z += beta (b - a)              (x, w, y; bias from its consensus)
//   error    err[j][k] = |b - a|^2_metric   (reduced by reduce_rows)
// One pass over the in-edges builds |r_x ± r_w|^2, a second applies the root;
// z is updated in place, so PB's output is never stored.
// mode 0 = NMF (y holds the fixed data, c = 0); mode 1 = y free (Ω, g_j).
// Mirrors src/kernels/rrr_step.rs.

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
@group(0) @binding(6) var<storage, read_write> x: array<real>;
@group(0) @binding(7) var<storage, read_write> w: array<real>;
@group(0) @binding(8) var<storage, read> xa: array<real>;
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
    if (idx >= kk * params.bil_nodes) {
        return;
    }
    let jj = idx / kk;
    let k = idx - jj * kk;
    let j = bil[jj];
    let e0 = in_ptr[j];
    let e1 = in_ptr[j + 1u];
    let beta = scalars[0];
    let omega = scalars[1];
    var sp = real(0.0);
    var sm = real(0.0);
    for (var e = e0; e < e1; e++) {
        let o = e * kk + k;
        let rx = 2.0 * xa[src[e] * kk + k] - x[o];
        let rw = 2.0 * wa[e] - w[o];
        sp += (rx + rw) * (rx + rw);
        sm += (rx - rw) * (rx - rw);
    }
    let nj = j * kk + k;
    let g = metric[j];
    var c = real(0.0);
    var t = y[nj];
    var ry = t;
    if (params.mode == 1u) {
        ry = 2.0 * ya[nj] - y[nj];
        c = omega * omega / g;
        t = omega * ry;
    }
    let root = solve_root(sp, sm, c, t);
    let degenerate = root.status == STATUS_DEGENERATE;
    if (degenerate) {
        atomicAdd(&counters[0], 1u);
    } else if (root.status == STATUS_NOT_CONVERGED) {
        atomicAdd(&counters[1], 1u);
    }
    var e2 = real(0.0);
    for (var e = e0; e < e1; e++) {
        let o = e * kk + k;
        let xae = xa[src[e] * kk + k];
        let wae = wa[e];
        let rx = 2.0 * xae - x[o];
        let rw = 2.0 * wae - w[o];
        var pb = vec2<real>(rx, rw);
        if (!degenerate) {
            pb = apply_root(rx, rw, root);
        }
        let dx = pb.x - xae;
        let dw = pb.y - wae;
        x[o] += beta * dx;
        w[o] += beta * dw;
        e2 += dx * dx + dw * dw;
    }
    if (params.mode == 1u) {
        var yb = ry;
        if (!degenerate) {
            yb = ry - omega * root_u(root) / g;
        }
        let dy = yb - ya[nj];
        y[nj] += beta * dy;
        e2 += g * dy * dy;
    }
    if (params.has_bias != 0u) {
        var s = real(0.0);
        let pt = params.parts_total;
        for (var p = 0u; p < pt; p++) {
            s += bpart[j * pt + p];
        }
        let db = s / real(params.items_total) - ba[nj];
        b[nj] += beta * db;
        e2 += g * db * db;
    }
    err[jj * kk + k] = e2;
}
