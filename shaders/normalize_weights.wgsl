// Weight consensus with side constraints, one invocation per group (the
// in-edges of a node for classifiers, the out-edges of a code node for NMF):
// mean over the batch from partial sums, optional clamp at 0 with the
// all-nonpositive fallback (Ω at the first largest unclamped mean), then
// rescale to norm Ω. Mirrors src/kernels/normalize_weights.rs.

//!entry
struct NormParams {
    groups: u32,
    items_total: u32,
    parts_total: u32,
    clamp: u32,
}

@group(0) @binding(0) var<uniform> params: NormParams;
// [Ω]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> group_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> group_edges: array<u32>;
@group(0) @binding(4) var<storage, read> partial: array<real>;
@group(0) @binding(5) var<storage, read_write> wa: array<real>;

@compute @workgroup_size(64)
fn normalize_weights(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let gi = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (gi >= params.groups) {
        return;
    }
    let a = group_ptr[gi];
    let b = group_ptr[gi + 1u];
    if (b == a) {
        return;
    }
    let pt = params.parts_total;
    let inv_k = 1.0 / real(params.items_total);
    var wmax = real(0.0);
    var imax = a;
    var sumsq = real(0.0);
    for (var i = a; i < b; i++) {
        let e = group_edges[i];
        var s = real(0.0);
        for (var p = 0u; p < pt; p++) {
            s += partial[e * pt + p];
        }
        var v = s * inv_k;
        if (i == a || v > wmax) {
            wmax = v;
            imax = i;
        }
        if (params.clamp != 0u) {
            v = max(v, 0.0);
        }
        wa[e] = v;
        sumsq += v * v;
    }
    let omega = scalars[0];
    if ((params.clamp != 0u && wmax <= 0.0) || sumsq == 0.0) {
        for (var i = a; i < b; i++) {
            wa[group_edges[i]] = 0.0;
        }
        wa[group_edges[imax]] = omega;
        return;
    }
    let scale = omega / sqrt(sumsq);
    for (var i = a; i < b; i++) {
        let e = group_edges[i];
        wa[e] = wa[e] * scale;
    }
}
