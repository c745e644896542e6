// Eccentric exemptions (eq. 32) and relabeling (eq. 33): per-item keys from
// the class-node projection distances; select_radix.wgsl finds the
// threshold of the `budget` largest positive keys, and class_select writes
// each item's effective label. Mirrors src/kernels/class_select.rs.

const MODE_NONE: u32 = 0u;
const MODE_EXEMPT: u32 = 1u;
const MODE_RELABEL: u32 = 2u;
// Relabeling of class-0 items (fakes) only.
const MODE_RELABEL_FAKES: u32 = 3u;
const LABEL_EXEMPT: u32 = 0xffffffffu;

//!entry
struct SelectParams {
    items: u32,
    offset: u32,
    items_total: u32,
    first_class: u32,
    classes: u32,
    mode: u32,
    budget: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: SelectParams;
// [class margin Δ]
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> metric: array<real>;
@group(0) @binding(3) var<storage, read> y: array<real>;
@group(0) @binding(4) var<storage, read> b: array<real>;
// Given labels of this chunk; effective labels are written to `eff`.
@group(0) @binding(5) var<storage, read> given: array<u32>;
// Batch-wide [K] keys and best labels.
@group(0) @binding(6) var<storage, read_write> keys: array<real>;
@group(0) @binding(7) var<storage, read_write> eff: array<u32>;
// What select_radix found: [status, remaining, threshold words], tie ranks
// per item and ties before each block.
@group(0) @binding(8) var<storage, read> state: array<u32>;
@group(0) @binding(9) var<storage, read> tie_rank: array<u32>;
@group(0) @binding(10) var<storage, read> block_ties: array<u32>;

fn dist(k: u32, label: u32) -> real {
    let kk = params.items;
    var d = real(0.0);
    for (var c = 0u; c < params.classes; c++) {
        let i = params.first_class + c;
        let z = y[i * kk + k] - b[i * kk + k];
        var v = max(z, 0.0);
        if (c == label) {
            v = max(scalars[0] - z, 0.0);
        }
        d += metric[i] * v * v * 0.5;
    }
    return d;
}

fn item_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

// Writes keys[offset + k]; the minimizing label waits in eff[k] until
// class_select decides.
@compute @workgroup_size(64)
fn class_keys(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let k = item_index(wid, nwg, lid);
    if (k >= params.items) {
        return;
    }
    let g = given[k];
    let dg = dist(k, g);
    var key = dg;
    var best = g;
    if (params.mode == MODE_RELABEL_FAKES && g != 0u) {
        key = 0.0;
    } else if (params.mode == MODE_RELABEL || params.mode == MODE_RELABEL_FAKES) {
        var db = dg;
        for (var label = 0u; label < params.classes; label++) {
            let d = dist(k, label);
            if (d < db) {
                db = d;
                best = label;
            }
        }
        key = dg - db;
    }
    keys[params.offset + k] = key;
    eff[k] = best;
}

@compute @workgroup_size(64)
fn class_select(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let k = item_index(wid, nwg, lid);
    if (k >= params.items) {
        return;
    }
    let me = params.offset + k;
    let chosen = params.mode != MODE_NONE && radix_selected(keys[me], me);
    if (!chosen) {
        eff[k] = given[k];
    } else if (params.mode == MODE_EXEMPT) {
        eff[k] = LABEL_EXEMPT;
    }
    // Relabeled items keep the best label class_keys left in eff.
}

// Whether the item with key `key` at batch index `me` is selected.
fn radix_selected(key: real, me: u32) -> bool {
    if (!(key > 0.0)) {
        return false;
    }
    let status = state[0];
    if (status == SEL_ALL) {
        return true;
    }
    if (status != SEL_SEARCHING) {
        return false;
    }
    let w = order_words(key);
    let t = vec3<u32>(state[2], state[3], state[4]);
    if (words_greater(w, t)) {
        return true;
    }
    return all(w == t) && block_ties[me / TIE_BLOCK] + tie_rank[me] < state[1];
}
