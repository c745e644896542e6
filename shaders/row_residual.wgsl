// Per-row residuals of two n × d matrices: out[i] = (Σ_j |a_ij − b_ij|,
// Σ_j (a_ij − b_ij)²), one invocation per row. StarNet's per-item residual
// norms (outlier score, lemma 4) and reconstruction errors (rms and the
// paper's elastic |·| + ‖·‖). Mirrors src/kernels/row_residual.rs.

//!entry
struct ResidualParams {
    rows: u32,
    d: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: ResidualParams;
@group(0) @binding(1) var<storage, read> a: array<real>;
@group(0) @binding(2) var<storage, read> b: array<real>;
@group(0) @binding(3) var<storage, read_write> out: array<real>;

@compute @workgroup_size(64)
fn row_residual(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= params.rows) {
        return;
    }
    let d = params.d;
    var l1 = real(0.0);
    var l2 = real(0.0);
    for (var j = 0u; j < d; j++) {
        let t = a[i * d + j] - b[i * d + j];
        l1 += abs(t);
        l2 += t * t;
    }
    out[2u * i] = l1;
    out[2u * i + 1u] = l2;
}
