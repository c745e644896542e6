// The RRR update for dense variables: z += beta (b - a), err = (b - a)^2,
// with a = PA(z) and b = PB(2a - z) computed by earlier kernels.
// Mirrors src/kernels/rrr_update.rs.

//!entry
struct UpdateParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: UpdateParams;
// [beta]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> pa: array<real>;
@group(0) @binding(3) var<storage, read> pb: array<real>;
@group(0) @binding(4) var<storage, read_write> z: array<real>;
@group(0) @binding(5) var<storage, read_write> err: array<real>;

@compute @workgroup_size(64)
fn rrr_update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= params.n) {
        return;
    }
    let d = pb[i] - pa[i];
    z[i] += scalars[0] * d;
    err[i] = d * d;
}
