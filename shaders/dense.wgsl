// Dense layer product with epilogue, for the rows i ∈ [0, rows) of a tile:
//   out[i][j] = act(Σ_l a[i][l] b[l][j] + bias[j])
// a: rows × k, b: k × m, both row-major; act = identity (0), leaky ReLU
// with slope α (1) or its inverse (2). 16 × 16 output tiles with 16 × 16
// tiles of A and B staged in workgroup memory. Mirrors src/kernels/dense.rs.

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
}

@group(0) @binding(0) var<uniform> params: DenseParams;
// scalars[0] = α.
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> a: array<real>;
@group(0) @binding(3) var<storage, read> b: array<real>;
@group(0) @binding(4) var<storage, read> bias: array<real>;
@group(0) @binding(5) var<storage, read_write> out: array<real>;

const T: u32 = 16u;
var<workgroup> at: array<real, 256>;
var<workgroup> bt: array<real, 256>;

@compute @workgroup_size(256)
fn dense(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.y * nwg.x + wid.x;
    let col_tiles = (params.m + T - 1u) / T;
    let row_tiles = (params.rows + T - 1u) / T;
    if (wg >= row_tiles * col_tiles) {
        return;
    }
    let i0 = (wg / col_tiles) * T;
    let j0 = (wg % col_tiles) * T;
    let ti = lid / T;
    let tj = lid % T;
    let i = i0 + ti;
    let j = j0 + tj;
    let k = params.k;
    var acc = real(0.0);
    for (var l0 = 0u; l0 < k; l0 += T) {
        // A tile: rows i0.., columns l0..; B tile: rows l0.., columns j0...
        var av = real(0.0);
        if (i < params.rows && l0 + tj < k) {
            av = a[i * k + l0 + tj];
        }
        at[lid] = av;
        var bv = real(0.0);
        if (l0 + ti < k && j < params.m) {
            bv = b[(l0 + ti) * params.m + j];
        }
        bt[lid] = bv;
        workgroupBarrier();
        for (var l = 0u; l < T; l++) {
            acc += at[ti * T + l] * bt[l * T + tj];
        }
        workgroupBarrier();
    }
    if (i < params.rows && j < params.m) {
        let v = acc + bias[j];
        var o = v;
        if (params.act == 1u) {
            o = leaky(v, scalars[0], false);
        } else if (params.act == 2u) {
            o = leaky(v, scalars[0], true);
        }
        out[i * params.m + j] = o;
    }
}
