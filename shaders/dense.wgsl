// Dense layer product with epilogue, for the rows i ∈ [0, rows) of a tile:
//   out[i][j] = act(Σ_l a[i][l] b[l][j] + bias[j])
// a: rows × k, b: k × m, both row-major; act = identity (0), leaky ReLU
// with slope α (1) or its inverse (2). 64 × 64 output tiles, 4 × 4 per
// invocation, with A and B staged in workgroup memory. Mirrors
// src/kernels/dense.rs.

fn leaky(v: real, alpha: real, inverse: bool) -> real {
    if (v >= real(0.0)) {
        return v;
    }
    if (inverse) {
        return v / alpha;
    }
    return v * alpha;
}

//!entry
struct DenseParams {
    rows: u32,
    k: u32,
    m: u32,
    act: u32,
    // This dispatch's part [l_begin, l_end) of the inner dimension
    // (l_begin a multiple of 16), whether its sums go on from the output's,
    // and whether it ends them (adds the bias and applies act): a product
    // split over dispatches adds in the same order as one dispatch.
    l_begin: u32,
    l_end: u32,
    resume: u32,
    finish: u32,
}

@group(0) @binding(0) var<uniform> params: DenseParams;
// scalars[0] = α.
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> a: array<real>;
@group(0) @binding(3) var<storage, read> b: array<real>;
@group(0) @binding(4) var<storage, read> bias: array<real>;
@group(0) @binding(5) var<storage, read_write> out: array<real>;

// A workgroup computes a 64 × 64 output tile, each invocation a 4 × 4
// block of it held in registers; A and B pass through workgroup memory 16
// columns (rows) at a time. Every output still sums l = 0, 1, … in order.
const TM: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> at: array<real, 1024>;
var<workgroup> bt: array<real, 1024>;

@compute @workgroup_size(256)
fn dense(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.y * nwg.x + wid.x;
    let col_tiles = (params.m + TM - 1u) / TM;
    let row_tiles = (params.rows + TM - 1u) / TM;
    if (wg >= row_tiles * col_tiles) {
        return;
    }
    let i0 = (wg / col_tiles) * TM;
    let j0 = (wg % col_tiles) * TM;
    let ti = (lid / 16u) * 4u;
    let tj = (lid % 16u) * 4u;
    let k = params.k;
    var acc: array<real, 16>;
    if (params.resume != 0u) {
        for (var r = 0u; r < 4u; r++) {
            for (var c = 0u; c < 4u; c++) {
                let i = i0 + ti + r;
                let j = j0 + tj + c;
                if (i < params.rows && j < params.m) {
                    acc[r * 4u + c] = out[i * params.m + j];
                }
            }
        }
    }
    for (var l0 = params.l_begin; l0 < min(k, params.l_end); l0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            // A tile [64 rows][16 columns], B tile [16 rows][64 columns].
            let e = lid + 256u * q;
            let ar = e / TK;
            let ac = e % TK;
            var av = real(0.0);
            if (i0 + ar < params.rows && l0 + ac < k) {
                av = a[(i0 + ar) * k + l0 + ac];
            }
            at[e] = av;
            let br = e / TM;
            let bc = e % TM;
            var bv = real(0.0);
            if (l0 + br < k && j0 + bc < params.m) {
                bv = b[(l0 + br) * params.m + j0 + bc];
            }
            bt[e] = bv;
        }
        workgroupBarrier();
        for (var l = 0u; l < TK; l++) {
            var ar: array<real, 4>;
            var br: array<real, 4>;
            for (var r = 0u; r < 4u; r++) {
                ar[r] = at[(ti + r) * TK + l];
                br[r] = bt[l * TM + tj + r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var c = 0u; c < 4u; c++) {
                    acc[r * 4u + c] += ar[r] * br[c];
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        for (var c = 0u; c < 4u; c++) {
            let i = i0 + ti + r;
            let j = j0 + tj + c;
            if (i < params.rows && j < params.m) {
                if (params.finish == 0u) {
                    out[i * params.m + j] = acc[r * 4u + c];
                    continue;
                }
                let v = acc[r * 4u + c] + bias[j];
                var o = v;
                if (params.act == 1u) {
                    o = leaky(v, scalars[0], false);
                } else if (params.act == 2u) {
                    o = leaky(v, scalars[0], true);
                }
                out[i * params.m + j] = o;
            }
        }
    }
}
