// Bilinear projection of (x, w, y) onto x·w = Ω y (metric |dx|²+|dw|²+g dy²).
// Mirrors src/kernels/project_bilinear.rs line by line; see its docs for the math.
// `real` and REAL_EPS are prepended by the host (f32 or f64).

const MAX_ITER: u32 = 200u;
const STATUS_OK: u32 = 0u;
const STATUS_DEGENERATE: u32 = 1u;
const STATUS_NOT_CONVERGED: u32 = 2u;

struct Root {
    ua: real,
    s: real,
    inv_den: real,
    positive: bool,
    status: u32,
}

// Solves h(u) = A/(1-u)^2 - B/(1+u)^2 + c u - t = 0; see the Rust twin for the regimes.
fn solve_root(sp: real, sm: real, c: real, t: real) -> Root {
    var r: Root;
    r.ua = real(0.0);
    r.s = real(1.0);
    r.inv_den = real(1.0);
    r.positive = true;
    r.status = STATUS_OK;
    let aa = sp * 0.25;
    let bb = sm * 0.25;
    let h0 = aa - bb - t;
    if (h0 == 0.0) {
        return r;
    }
    let positive = h0 < 0.0;
    r.positive = positive;
    var a = aa;
    var b = bb;
    var tt = t;
    if (!positive) {
        a = bb;
        b = aa;
        tt = -t;
    }
    if (!(a > 0.0)) {
        let g1 = c - b * 0.25 - tt;
        if (!(g1 > 0.0)) {
            r.status = STATUS_DEGENERATE;
            return r;
        }
    }
    let ra = sqrt(a);
    let rb = sqrt(b);
    let ta = ra * 2.0;
    let tb = rb / 1.5;
    let g_half = ta * ta - tb * tb + c * 0.5 - tt;
    let small = g_half >= 0.0;
    var lo = real(0.0);
    var hi = real(0.5);
    var q = select(real(0.5), real(0.0), small);
    var status = STATUS_NOT_CONVERGED;
    for (var it = 0u; it < MAX_ITER; it++) {
        var om = q;
        var op = 2.0 - q;
        var vq = 1.0 - q;
        if (small) {
            om = 1.0 - q;
            op = 1.0 + q;
            vq = q;
        }
        let r1 = 1.0 / om;
        let r2 = 1.0 / op;
        let xa = ra * r1;
        let xb = rb * r2;
        let g = xa * xa - xb * xb + c * vq - tt;
        if (g == 0.0) {
            status = STATUS_OK;
            break;
        }
        let gp = 2.0 * xa * xa * r1 + 2.0 * xb * xb * r2 + c;
        let fq = select(-g, g, small);
        if (fq < 0.0) {
            lo = q;
        } else {
            hi = q;
        }
        let newton = q - fq / gp;
        let inside = newton > lo && newton < hi;
        let floor = 4.0 * REAL_EPS * (xa * xa + xb * xb + abs(c * vq) + abs(tt));
        if (abs(g) <= floor) {
            if (inside) {
                q = newton;
            }
            status = STATUS_OK;
            break;
        }
        var next = newton;
        if (!inside) {
            next = (lo + hi) * 0.5;
        }
        let step = abs(next - q);
        if (step <= 4.0 * REAL_EPS * next || next == lo || next == hi) {
            if (next > 0.0) {
                q = next;
            }
            status = STATUS_OK;
            break;
        }
        q = next;
    }
    if (small) {
        r.ua = q;
        r.s = 1.0 - q;
    } else {
        r.s = q;
        r.ua = 1.0 - q;
    }
    r.inv_den = 1.0 / (r.s * (1.0 + r.ua));
    r.status = status;
    return r;
}

fn root_u(r: Root) -> real {
    return select(-r.ua, r.ua, r.positive);
}

// (x', w') for one coordinate pair.
fn apply_root(x: real, w: real, r: Root) -> vec2<real> {
    let s = r.s;
    let k = r.inv_den;
    if (s >= 0.5) {
        let u = root_u(r);
        return vec2<real>((x + u * w) * k, (w + u * x) * k);
    }
    if (r.positive) {
        let sum = x + w;
        return vec2<real>((sum - s * w) * k, (sum - s * x) * k);
    }
    let d = x - w;
    return vec2<real>((d + s * w) * k, (s * x - d) * k);
}

//!entry
struct BilinearParams {
    problems: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: BilinearParams;
@group(0) @binding(1) var<storage, read> ptr: array<u32>;
@group(0) @binding(2) var<storage, read> xs: array<real>;
@group(0) @binding(3) var<storage, read> ws: array<real>;
@group(0) @binding(4) var<storage, read> ys: array<real>;
@group(0) @binding(5) var<storage, read> omegas: array<real>;
@group(0) @binding(6) var<storage, read> gs: array<real>;
@group(0) @binding(7) var<storage, read_write> x_out: array<real>;
@group(0) @binding(8) var<storage, read_write> w_out: array<real>;
@group(0) @binding(9) var<storage, read_write> y_out: array<real>;
@group(0) @binding(10) var<storage, read_write> u_out: array<real>;
@group(0) @binding(11) var<storage, read_write> status_out: array<u32>;

// One invocation per problem; g == 0 selects the NMF form (y fixed, c = 0).
@compute @workgroup_size(64)
fn project_bilinear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (p >= params.problems) {
        return;
    }
    let a = ptr[p];
    let b = ptr[p + 1u];
    var sp = real(0.0);
    var sm = real(0.0);
    for (var i = a; i < b; i++) {
        let x = xs[i];
        let w = ws[i];
        sp += (x + w) * (x + w);
        sm += (x - w) * (x - w);
    }
    let omega = omegas[p];
    let g = gs[p];
    let y = ys[p];
    var c = real(0.0);
    var t = y;
    if (g != 0.0) {
        c = omega * omega / g;
        t = omega * y;
    }
    let r = solve_root(sp, sm, c, t);
    status_out[p] = r.status;
    if (r.status == STATUS_DEGENERATE) {
        for (var i = a; i < b; i++) {
            x_out[i] = xs[i];
            w_out[i] = ws[i];
        }
        y_out[p] = y;
        u_out[p] = 0.0;
        return;
    }
    for (var i = a; i < b; i++) {
        let o = apply_root(xs[i], ws[i], r);
        x_out[i] = o.x;
        w_out[i] = o.y;
    }
    let u = root_u(r);
    u_out[p] = u;
    if (g != 0.0) {
        y_out[p] = y - omega * u / g;
    } else {
        y_out[p] = y;
    }
}
