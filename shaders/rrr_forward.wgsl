// A classifier batch's start computed on the device: each item's feed pass
// with the model's weights and biases, from a labelled item set kept on
// the device (item-major [items][dim] inputs and a label per item) and the
// batch's rows of it. Node values x and pre-activations y go to [N][K]
// arrays for rrr_load to build the replicas from; data nodes take the
// inputs (y = 0); a node j of the order takes y = Ω⁻¹ Σ_e x[src(e)] w[e]
// over its in-edges in order, x = y − b, at hidden nodes max(0, x).
// With `predict`, it writes each item's class (the first class node with
// the largest y − b) instead of the data rows and labels. The quad variant (LANE_ITEMS = 4) passes four
// items per invocation. On software adapters the order is split over
// dispatches (llvmpipe's loop limit), each resuming from the node arrays.
// Mirrors src/kernels/rrr_forward.rs.

//!entry
struct ForwardParams {
    items: u32,
    dim: u32,
    order_len: u32,
    first_class: u32,
    classes: u32,
    predict: u32,
    // This dispatch's part of the order: [t_begin, t_end). The first part
    // also reads the inputs, the last also writes labels or classes.
    t_begin: u32,
    t_end: u32,
}

@group(0) @binding(0) var<uniform> params: ForwardParams;
// [1/Ω]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read> in_ptr: array<u32>;
@group(0) @binding(4) var<storage, read> src: array<u32>;
@group(0) @binding(5) var<storage, read> weights: array<real>;
@group(0) @binding(6) var<storage, read> biases: array<real>;
@group(0) @binding(7) var<storage, read> inputs: array<real>;
@group(0) @binding(8) var<storage, read> set_labels: array<u32>;
@group(0) @binding(9) var<storage, read> rows: array<u32>;
@group(0) @binding(10) var<storage, read_write> nodes_x: array<itemv>;
@group(0) @binding(11) var<storage, read_write> nodes_y: array<itemv>;
@group(0) @binding(12) var<storage, read_write> data: array<itemv>;
@group(0) @binding(13) var<storage, read_write> labels: array<u32>;
@group(0) @binding(14) var<storage, read_write> given: array<u32>;
@group(0) @binding(15) var<storage, read_write> predicted: array<u32>;

@compute @workgroup_size(64)
fn rrr_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kq = params.items / LANE_ITEMS;
    if (q >= kq) {
        return;
    }
    let dim = params.dim;
    let start = params.predict == 0u;
    let first = params.t_begin == 0u;
    for (var i = 0u; i < select(0u, dim, first); i++) {
        var v = itemv(0.0);
        for (var c = 0u; c < LANE_ITEMS; c++) {
            v = item_set(v, c, inputs[rows[q * LANE_ITEMS + c] * dim + i]);
        }
        nodes_x[i * kq + q] = v;
        nodes_y[i * kq + q] = itemv(0.0);
        if (start) {
            data[i * kq + q] = v;
        }
    }
    let inv = scalars[0];
    for (var t = params.t_begin; t < params.t_end; t++) {
        let j = order[t];
        var s = itemv(0.0);
        for (var e = in_ptr[j]; e < in_ptr[j + 1u]; e++) {
            s += nodes_x[src[e] * kq + q] * weights[e];
        }
        let y = s * inv;
        var x = y - biases[j];
        if (j < params.first_class) {
            x = max(x, itemv(0.0));
        }
        nodes_x[j * kq + q] = x;
        nodes_y[j * kq + q] = y;
        if (start) {
            data[j * kq + q] = itemv(0.0);
        }
    }
    if (params.t_end < params.order_len) {
        return;
    }
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let k = q * LANE_ITEMS + c;
        if (start) {
            let label = set_labels[rows[k]];
            labels[k] = label;
            given[k] = label;
        } else {
            let fc = params.first_class;
            var best = 0u;
            var top = item_at(nodes_x[fc * kq + q], c);
            for (var cl = 1u; cl < params.classes; cl++) {
                let score = item_at(nodes_x[(fc + cl) * kq + q], c);
                if (score > top) {
                    best = cl;
                    top = score;
                }
            }
            predicted[k] = best;
        }
    }
}
