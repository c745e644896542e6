// Elementwise leaky ReLU a_α (or its inverse) in place, one invocation per
// element; `leaky` comes from dense.wgsl. Mirrors src/kernels/leaky_relu.rs.

//!entry
struct LeakyParams {
    len: u32,
    inverse: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: LeakyParams;
// scalars[0] = α.
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read_write> x: array<real>;

@compute @workgroup_size(64)
fn leaky_relu(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= params.len) {
        return;
    }
    x[i] = leaky(x[i], scalars[0], params.inverse != 0u);
}
