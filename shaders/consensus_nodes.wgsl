// A-projection at every (item k, node i): average the x replicas over the
// node's out-edges, then apply the node's side constraint jointly with its
// y and b (clamp, data value, activation, class margin).
// Layout: edge arrays [E][K], node arrays [N][K], k fastest (coalesced).
// The quad variant (LANE_ITEMS = 4) averages four items' x per load, then
// applies each item's side constraint. Mirrors src/kernels/consensus_nodes.rs.

const NODE_FREE: u32 = 0u;
const NODE_NONNEG: u32 = 1u;
const NODE_DATA: u32 = 2u;
const NODE_RELU: u32 = 3u;
const NODE_CLASS: u32 = 4u;
const NODE_ZIGMOID: u32 = 5u;
const NODE_STEP: u32 = 6u;
const NODE_FIXED: u32 = 7u;
// Fixed for items labelled node_param[i], else zigmoid / step.
const NODE_FIXED_ZIGMOID: u32 = 8u;
const NODE_FIXED_STEP: u32 = 9u;

// The node kinds a pipeline may meet (bit k: kind k), fixed when it is
// built: a problem's kernels compile without the projections of kinds it
// does not have (a software adapter runs every branch of a switch for
// every SIMD lane whatever the lanes' kinds).
override NODE_KINDS: u32 = 0xffffffffu;

fn may_be(kind: u32) -> bool {
    return (NODE_KINDS & (1u << kind)) != 0u;
}

// The A-projection of node i = idx / kq at quad q = idx % kq: x averaged
// over the out-edges, then the side constraint (class margin Δ,
// activation half-width m). Reads out_ptr, out_edges, node_kind,
// node_param, labels, x, y, b and data; writes xa, ya and ba (globals
// of the including shader). With `x_only` (set where nobody reads ya or
// ba) a free or non-negative node, whose projection reads no y, b or
// data and leaves y and b as they are, writes its xa alone.
fn consensus_at(idx: u32, kq: u32, margin: real, half: real, x_only: bool) {
    let i = idx / kq;
    let q = idx - i * kq;
    let kind = node_kind[i];
    let e0 = out_ptr[i];
    // Data and fixed nodes take x from the data: skip the mean over their
    // out-edges (for an image classifier, most of x).
    var e1 = out_ptr[i + 1u];
    if (kind == NODE_DATA || kind == NODE_FIXED) {
        e1 = e0;
    }
    var sum = itemv(0.0);
    for (var e = e0; e < e1; e++) {
        sum += x[out_edges[e] * kq + q];
    }
    var xbar = itemv(0.0);
    if (e1 > e0) {
        xbar = sum / real(e1 - e0);
    }
    if (x_only && (kind == NODE_FREE || kind == NODE_NONNEG)) {
        xa[idx] = select(xbar, max(xbar, itemv(0.0)), kind == NODE_NONNEG);
        return;
    }
    let yq = y[idx];
    let bq = b[idx];
    if (may_be(NODE_RELU) && kind == NODE_RELU) {
        // The common hidden node, all items at once.
        let o = relu_items(xbar, yq, bq);
        xa[idx] = o.x;
        ya[idx] = o.y;
        ba[idx] = o.b;
        return;
    }
    let dq = data[idx];
    var xo = xbar;
    var yo = yq;
    var bo = bq;
    for (var c = 0u; c < LANE_ITEMS; c++) {
        let k = q * LANE_ITEMS + c;
        let o = project_node(i, k, kind, item_at(xbar, c), item_at(yq, c), item_at(bq, c), item_at(dq, c), margin, half);
        xo = item_set(xo, c, o.x);
        yo = item_set(yo, c, o.y);
        bo = item_set(bo, c, o.z);
    }
    xa[idx] = xo;
    ya[idx] = yo;
    ba[idx] = bo;
}

struct ItemsXyb {
    x: itemv,
    y: itemv,
    b: itemv,
}

// relu_proj over the invocation's items: each branch computed and chosen
// by select, the same expressions per item.
fn relu_items(x: itemv, y: itemv, b: itemv) -> ItemsXyb {
    let s = (y - b) * 0.5;
    let up = !(y < b);
    let d1 = select(x * x, x * x + 2.0 * s * s, up);
    let s2 = (x - y + b) / 3.0;
    let low = x - s2 < itemv(0.0);
    let d2 = select(3.0 * s2 * s2, x * x + 2.0 * s * s, low);
    let first = d1 < d2;
    let c2x = select(x - s2, itemv(0.0), low);
    let c2y = select(y + s2, y - s, low);
    let c2b = select(b - s2, y - s, low);
    return ItemsXyb(
        select(c2x, itemv(0.0), first),
        select(c2y, select(y, y - s, up), first),
        select(c2b, select(b, y - s, up), first),
    );
}

// Node i's side constraint at item k, given its mean x, its y and b and
// its data value, given the class margin and the activation half-width:
// the new (x, y, b).
fn project_node(
    i: u32, k: u32, kind: u32, x_mean: real, y_in: real, b_in: real, d: real, margin: real, half: real,
) -> vec3<real> {
    var xbar = x_mean;
    var yv = y_in;
    var bv = b_in;
    switch kind {
        case NODE_NONNEG: {
            xbar = max(xbar, 0.0);
        }
        case NODE_DATA: {
            xbar = d;
        }
        case NODE_RELU: {
            if (!may_be(NODE_RELU)) {
                break;
            }
            let o = relu_proj(xbar, yv, bv);
            xbar = o.x;
            yv = o.y;
            bv = o.z;
        }
        case NODE_CLASS: {
            if (!may_be(NODE_CLASS)) {
                break;
            }
            // Exempted items (label 0xffffffff) keep their class variables.
            if (labels[k] == 0xffffffffu) {
                break;
            }
            let o = class_proj(yv, bv, labels[k] == node_param[i], margin);
            yv = o.x;
            bv = o.y;
        }
        case NODE_ZIGMOID: {
            if (!may_be(NODE_ZIGMOID)) {
                break;
            }
            let o = zigmoid_proj(xbar, yv, bv, half);
            xbar = o.x;
            yv = o.y;
            bv = o.z;
        }
        case NODE_STEP: {
            if (!may_be(NODE_STEP)) {
                break;
            }
            let o = step_proj(xbar, yv, bv, half);
            xbar = o.x;
            yv = o.y;
            bv = o.z;
        }
        case NODE_FIXED: {
            if (!may_be(NODE_FIXED)) {
                break;
            }
            xbar = d;
            let o = fixed_proj(xbar, yv, bv, half);
            yv = o.x;
            bv = o.y;
        }
        case NODE_FIXED_ZIGMOID, NODE_FIXED_STEP: {
            if (!may_be(NODE_FIXED_ZIGMOID) && !may_be(NODE_FIXED_STEP)) {
                break;
            }
            if (labels[k] == node_param[i]) {
                xbar = d;
                let o = fixed_proj(xbar, yv, bv, half);
                yv = o.x;
                bv = o.y;
            } else if (kind == NODE_FIXED_ZIGMOID) {
                let o = zigmoid_proj(xbar, yv, bv, half);
                xbar = o.x;
                yv = o.y;
                bv = o.z;
            } else {
                let o = step_proj(xbar, yv, bv, half);
                xbar = o.x;
                yv = o.y;
                bv = o.z;
            }
        }
        default: {}
    }
    return vec3<real>(xbar, yv, bv);
}

//!entry
struct NodeParams {
    items: u32,
    nodes: u32,
    stop_word: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: NodeParams;
// [class margin Δ, activation half-width m]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> out_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> out_edges: array<u32>;
@group(0) @binding(4) var<storage, read> node_kind: array<u32>;
@group(0) @binding(5) var<storage, read> node_param: array<u32>;
@group(0) @binding(6) var<storage, read> labels: array<u32>;
@group(0) @binding(7) var<storage, read> x: array<itemv>;
@group(0) @binding(8) var<storage, read> y: array<itemv>;
@group(0) @binding(9) var<storage, read> b: array<itemv>;
@group(0) @binding(10) var<storage, read> data: array<itemv>;
@group(0) @binding(11) var<storage, read_write> xa: array<itemv>;
@group(0) @binding(12) var<storage, read_write> ya: array<itemv>;
@group(0) @binding(13) var<storage, read_write> ba: array<itemv>;
// A stopped RRR run's flag (rrr_converge): stop[stop_word] set leaves the
// outputs as they are.
@group(0) @binding(14) var<storage, read> stop: array<u32>;

@compute @workgroup_size(64)
fn consensus_nodes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let kk = params.items;
    let kq = kk / LANE_ITEMS;
    if (idx >= kq * params.nodes || (params.stop_word != 0xffffffffu && stop[params.stop_word] != 0u)) {
        return;
    }
    consensus_at(idx, kq, scalars[0], scalars[1], false);
}

