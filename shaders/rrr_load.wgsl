// A batch's replicas from its node form: x[e][k] = nodes_x[src(e)][k],
// w[e][k] = weights[e], y[i][k] = nodes_y[i][k], b[i][k] = biases[i], one
// invocation per element of the [E][K] and then the [N][K] arrays. The
// host sends N × K node values instead of E × K replicas. The quad variant
// (LANE_ITEMS = 4) writes four items of x, w, y and b per invocation.
// Mirrors src/kernels/rrr_load.rs.

//!entry
struct LoadParams {
    items: u32,
    edges: u32,
    nodes: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: LoadParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<real>;
@group(0) @binding(3) var<storage, read> biases: array<real>;
@group(0) @binding(4) var<storage, read> nodes_x: array<itemv>;
@group(0) @binding(5) var<storage, read> nodes_y: array<itemv>;
@group(0) @binding(6) var<storage, read_write> x: array<itemv>;
@group(0) @binding(7) var<storage, read_write> w: array<itemv>;
@group(0) @binding(8) var<storage, read_write> y: array<itemv>;
@group(0) @binding(9) var<storage, read_write> b: array<itemv>;

@compute @workgroup_size(64)
fn rrr_load(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kq = params.items / LANE_ITEMS;
    let edge_elems = params.edges * kq;
    if (idx < edge_elems) {
        let e = idx / kq;
        let q = idx - e * kq;
        x[idx] = nodes_x[src[e] * kq + q];
        w[idx] = itemv(weights[e]);
        return;
    }
    let n = idx - edge_elems;
    if (n < params.nodes * kq) {
        y[n] = nodes_y[n];
        b[n] = itemv(biases[n / kq]);
    }
}
