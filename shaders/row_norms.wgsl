// Squared norms of rows, into a buffer at an offset:
//   out[off + i] = Σ_j x[i][j]²   (x: rows × d, row-major)
// One invocation per row. Mirrors src/kernels/row_norms.rs.

//!entry
struct NormParams {
    rows: u32,
    d: u32,
    off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: NormParams;
@group(0) @binding(1) var<storage, read> x: array<real>;
@group(0) @binding(2) var<storage, read_write> out: array<real>;

@compute @workgroup_size(64)
fn row_norms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= params.rows) {
        return;
    }
    var s = real(0.0);
    for (var j = 0u; j < params.d; j++) {
        let v = x[i * params.d + j];
        s += v * v;
    }
    out[params.off + i] = s;
}
