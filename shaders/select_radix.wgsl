// Threshold selection in O(K): the `budget` largest positive keys of a
// batch, ties to the smaller index, exactly the items rank-by-counting
// picks. Positive keys map to words that order as the keys do (three f32
// parts); one histogram and one pick per 8-bit digit
// find the threshold key T and how many items equal to T are still to
// take; a block scan ranks those ties by index. Mirrors
// src/kernels/select_radix.rs.

// state[0]: what the selection found.
const SEL_SEARCHING: u32 = 0u;
// Fewer positive keys than the budget: every positive key is selected.
const SEL_ALL: u32 = 1u;
// A budget of 0: nothing is selected.
const SEL_NONE: u32 = 2u;
// Items per block of the tie scan (one workgroup each).
const TIE_BLOCK: u32 = 256u;

// A float's bits as a u32 that orders as the floats do.
fn ordered_bits(v: f32) -> u32 {
    let u = bitcast<u32>(v);
    if ((u & 0x80000000u) != 0u) {
        return ~u;
    }
    return u | 0x80000000u;
}

// Words of a positive key that compare lexicographically as the keys do:
// the key split into three f32 (each the nearest f32 to what the previous
// ones left, the differences exact), each as ordered bits. In f32 the last
// two are constant.
fn order_words(x: real) -> vec3<u32> {
    let y0 = f32(x);
    let r0 = x - real(y0);
    let y1 = f32(r0);
    let y2 = f32(r0 - real(y1));
    return vec3<u32>(ordered_bits(y0), ordered_bits(y1), ordered_bits(y2));
}

fn words_greater(a: vec3<u32>, b: vec3<u32>) -> bool {
    if (a.x != b.x) {
        return a.x > b.x;
    }
    if (a.y != b.y) {
        return a.y > b.y;
    }
    return a.z > b.z;
}

//!entry
struct RadixParams {
    items_total: u32,
    // Which word and bit offset this pass's digit takes.
    word: u32,
    shift: u32,
    budget: u32,
    // The digits already decided (masks of the three words).
    mask0: u32,
    mask1: u32,
    mask2: u32,
    // 1 on the first pass of a selection.
    first: u32,
}

@group(0) @binding(0) var<uniform> rp: RadixParams;
@group(0) @binding(1) var<storage, read> keys: array<real>;
@group(0) @binding(2) var<storage, read_write> bins: array<atomic<u32>>;
// [status, remaining, prefix word 0, 1, 2]
@group(0) @binding(3) var<storage, read_write> state: array<u32>;
// Per item: ties with a smaller index in its block.
@group(0) @binding(4) var<storage, read_write> tie_rank: array<u32>;
// Per block: its ties, then (after radix_blocks) the ties before it.
@group(0) @binding(5) var<storage, read_write> block_ties: array<u32>;

const HIST_ITEMS: u32 = 4096u;

var<workgroup> lbins: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, 256>;

fn digit_of(w: vec3<u32>) -> u32 {
    var v = w.x;
    if (rp.word == 1u) {
        v = w.y;
    } else if (rp.word == 2u) {
        v = w.z;
    }
    return (v >> rp.shift) & 255u;
}

// Counts, per value of this pass's digit, the positive keys whose decided
// digits equal the threshold's.
@compute @workgroup_size(256)
fn radix_hist(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.y * nwg.x + wid.x;
    atomicStore(&lbins[lid], 0u);
    workgroupBarrier();
    if (rp.first != 0u || state[0] == SEL_SEARCHING) {
        let mask = vec3<u32>(rp.mask0, rp.mask1, rp.mask2);
        let prefix = vec3<u32>(state[2], state[3], state[4]) & mask;
        let begin = g * HIST_ITEMS;
        for (var m = 0u; m < HIST_ITEMS; m += 256u) {
            let k = begin + m + lid;
            if (k < rp.items_total) {
                let key = keys[k];
                if (key > 0.0) {
                    let w = order_words(key);
                    if (all((w & mask) == prefix)) {
                        atomicAdd(&lbins[digit_of(w)], 1u);
                    }
                }
            }
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&lbins[lid]);
    if (c > 0u) {
        atomicAdd(&bins[lid], c);
    }
}

// Picks the digit under which the remaining count falls, and clears the bins.
@compute @workgroup_size(1)
fn radix_pick() {
    if (rp.first != 0u) {
        var total = 0u;
        for (var d = 0u; d < 256u; d++) {
            total += atomicLoad(&bins[d]);
        }
        state[1] = rp.budget;
        state[2] = 0u;
        state[3] = 0u;
        state[4] = 0u;
        if (rp.budget == 0u) {
            state[0] = SEL_NONE;
        } else if (total <= rp.budget) {
            state[0] = SEL_ALL;
        } else {
            state[0] = SEL_SEARCHING;
        }
    }
    if (state[0] == SEL_SEARCHING) {
        let r = state[1];
        var above = 0u;
        var digit = 0u;
        for (var i = 0u; i < 256u; i++) {
            let d = 255u - i;
            let c = atomicLoad(&bins[d]);
            if (above + c >= r) {
                digit = d;
                break;
            }
            above += c;
        }
        state[1] = r - above;
        state[2u + rp.word] |= digit << rp.shift;
    }
    for (var d = 0u; d < 256u; d++) {
        atomicStore(&bins[d], 0u);
    }
}

// Inclusive scan of `scan` over the workgroup.
fn scan_workgroup(lid: u32) {
    for (var off = 1u; off < 256u; off <<= 1u) {
        var v = 0u;
        if (lid >= off) {
            v = scan[lid - off];
        }
        workgroupBarrier();
        scan[lid] += v;
        workgroupBarrier();
    }
}

// Ranks the items equal to the threshold within their block.
@compute @workgroup_size(256)
fn radix_ties(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let blk = wid.y * nwg.x + wid.x;
    let k = blk * TIE_BLOCK + lid;
    var tie = 0u;
    if (k < rp.items_total && state[0] == SEL_SEARCHING) {
        let key = keys[k];
        let t = vec3<u32>(state[2], state[3], state[4]);
        if (key > 0.0 && all(order_words(key) == t)) {
            tie = 1u;
        }
    }
    scan[lid] = tie;
    workgroupBarrier();
    scan_workgroup(lid);
    if (k < rp.items_total) {
        tie_rank[k] = scan[lid] - tie;
    }
    if (lid == TIE_BLOCK - 1u) {
        block_ties[blk] = scan[lid];
    }
}

// Turns the blocks' tie counts into the ties before each block.
@compute @workgroup_size(256)
fn radix_blocks(@builtin(local_invocation_index) lid: u32) {
    let nb = (rp.items_total + TIE_BLOCK - 1u) / TIE_BLOCK;
    let per = (nb + 255u) / 256u;
    let begin = min(lid * per, nb);
    let end = min(begin + per, nb);
    var s = 0u;
    for (var i = begin; i < end; i++) {
        s += block_ties[i];
    }
    scan[lid] = s;
    workgroupBarrier();
    scan_workgroup(lid);
    var run = scan[lid] - s;
    for (var i = begin; i < end; i++) {
        let c = block_ties[i];
        block_ties[i] = run;
        run += c;
    }
}
