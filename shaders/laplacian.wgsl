// The Laplacian form of a kernel product, in place: with P = [K·X | K·1]
// (rows of w = r + 1) and M = [X | 1] (rows of w),
//   P[k][j] ← P[k][r] · M[k][j] − P[k][j]   for j < r,
// so that P's first r columns become (Diag(K1) − K)X and column r keeps
// K1. One invocation per (row, column < r). Mirrors src/kernels/laplacian.rs.

//!entry
struct LaplacianParams {
    rows: u32,
    w: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: LaplacianParams;
@group(0) @binding(1) var<storage, read> m: array<real>;
@group(0) @binding(2) var<storage, read_write> p: array<real>;

@compute @workgroup_size(64)
fn laplacian(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    let r = params.w - 1u;
    if (i >= params.rows * r) {
        return;
    }
    let k = i / r;
    let at = k * params.w + (i - k * r);
    p[at] = p[k * params.w + r] * m[at] - p[at];
}
