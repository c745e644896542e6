// Gaussian kernel matrix between the rows of A (n × d) and B (m × d):
// K[i][j] = exp(−‖a_i − b_j‖² / (2σ²)), for the rows i ∈ [row0, row0 + rows)
// of a tile (so an n × n matrix never needs one binding of n² elements),
// optionally with zero diagonal (i == j). Mirrors src/kernels/gauss_kernel.rs.

// e^{−x} for x ≥ 0. In f64 by hand: Vulkan's exp (GLSL.std.450 Exp) takes only
// 16/32-bit floats, so the built-in gives garbage in f64. x = k ln2 + r with
// |r| ≤ ln2/2 (ln2 split in two for f64), Taylor series of e^{−r}, and
// 2^{−k} by repeated squaring.
fn exp_neg(x: real) -> real {
    // f32: the built-in is exact enough and much faster (the branch is on a
    // constant, so each precision compiles one path).
    if (REAL_EPS > real(1e-10)) {
        return real(exp(-f32(x)));
    }
    if (x > real(745.2)) {
        return real(0.0);
    }
    let k = floor(x * real(1.4426950408889634) + real(0.5));
    let r = (x - k * real(0.6931471803691238)) - k * real(1.9082149292705877e-10);
    var term = real(1.0);
    var sum = real(1.0);
    for (var i = 1; i <= 17; i++) {
        term *= -r / real(i);
        sum += term;
    }
    var p = real(1.0);
    var b = real(0.5);
    var n = u32(k);
    loop {
        if (n == 0u) {
            break;
        }
        if ((n & 1u) != 0u) {
            p *= b;
        }
        b *= b;
        n = n >> 1u;
    }
    return sum * p;
}

//!entry
struct GaussParams {
    rows: u32,
    row0: u32,
    m: u32,
    d: u32,
    zero_diag: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: GaussParams;
// scalars[0] = 1 / (2σ²).
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> a: array<real>;
@group(0) @binding(3) var<storage, read> b: array<real>;
@group(0) @binding(4) var<storage, read_write> k: array<real>;

@compute @workgroup_size(64)
fn gauss_kernel(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let m = params.m;
    if (idx >= params.rows * m) {
        return;
    }
    let r = idx / m;
    let j = idx - r * m;
    let i = params.row0 + r;
    let d = params.d;
    var s = real(0.0);
    for (var c = 0u; c < d; c++) {
        let t = a[i * d + c] - b[j * d + c];
        s += t * t;
    }
    var v = exp_neg(s * scalars[0]);
    if (params.zero_diag != 0u && i == j) {
        v = real(0.0);
    }
    k[idx] = v;
}
