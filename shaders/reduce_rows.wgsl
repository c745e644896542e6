// Partial sums over items of each row of an [R][K] array: workgroup (r, p)
// sums items p*1024 .. p*1024+1023 of row r into partial[r*P_total + P_offset + p].
// mode 0 sums z; mode 1 sums the reflection 2a - z (bias B-consensus).
// With stop_word set, a stopped RRR run (rrr_converge) keeps its sums.
// reduce_rows_serial computes the same partials with one invocation per
// (row, part) and no barriers: faster for short rows (small batches), where
// a 256-wide workgroup would mostly idle through eight barriers.
// These partial sums are the allreduce seam: combine them across item chunks
// or devices before dividing by the batch size. A row may hold sums of
// `unit` items each (the RRR step's quad sums of w: unit 4), and part p
// then sums values p*1024/unit .. (p+1)*1024/unit − 1. In the quad variants
// (LANE_ITEMS = 4, rows of a multiple of 4 items) each load is four
// neighbouring items, summed as (k0 + k1) + (k2 + k3) at the end.
// Mirrors src/kernels/reduce_rows.rs.

const CHUNK: u32 = 1024u;

// The serial partial sum over quads first..end of the row whose first
// quad is `base`, of the values reduce_value(which, mode, i) gives (an
// accessor of the including shader).
fn serial_sum(which: u32, mode: u32, base: u32, first: u32, end: u32) -> real {
    var acc = itemv(0.0);
    for (var q = first; q < end; q++) {
        acc += reduce_value(which, mode, base + q);
    }
    return items_sum(acc);
}

//!entry
struct ReduceParams {
    rows: u32,
    items: u32,
    parts: u32,
    mode: u32,
    parts_total: u32,
    parts_offset: u32,
    stop_word: u32,
    // Items per value of z and a (a divisor of 1024 / LANE_ITEMS; 0 = 1).
    unit: u32,
}

@group(0) @binding(0) var<uniform> params: ReduceParams;
@group(0) @binding(1) var<storage, read> z: array<itemv>;
@group(0) @binding(2) var<storage, read> a: array<itemv>;
@group(0) @binding(3) var<storage, read_write> partial: array<real>;
// A stopped run's flag (rrr_converge): when stop[stop_word] is set, the
// partial sums are left as they are.
@group(0) @binding(4) var<storage, read> stop: array<u32>;

fn reduce_value(which: u32, mode: u32, i: u32) -> itemv {
    if (mode == 0u) {
        return z[i];
    }
    return 2.0 * a[i] - z[i];
}

fn stopped() -> bool {
    return params.stop_word != 0xffffffffu && stop[params.stop_word] != 0u;
}

var<workgroup> scratch: array<real, 256>;

@compute @workgroup_size(256)
fn reduce_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let group = wid.y * nwg.x + wid.x;
    let r = group / params.parts;
    if (r >= params.rows) {
        return;
    }
    let p = group - r * params.parts;
    let kq = params.items / LANE_ITEMS;
    let base = r * kq;
    let per_part = CHUNK / LANE_ITEMS / max(params.unit, 1u);
    var acc = itemv(0.0);
    for (var m = lid; m < per_part; m += 256u) {
        let q = p * per_part + m;
        if (q < kq) {
            if (params.mode == 0u) {
                acc += z[base + q];
            } else {
                acc += 2.0 * a[base + q] - z[base + q];
            }
        }
    }
    scratch[lid] = items_sum(acc);
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (lid < off) {
            scratch[lid] += scratch[lid + off];
        }
        workgroupBarrier();
    }
    if (lid == 0u && !stopped()) {
        partial[r * params.parts_total + params.parts_offset + p] = scratch[0];
    }
}

@compute @workgroup_size(64)
fn reduce_rows_serial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = (wid.y * nwg.x + wid.x) * 64u + lid;
    let r = t / params.parts;
    if (r >= params.rows || stopped()) {
        return;
    }
    let p = t - r * params.parts;
    let kq = params.items / LANE_ITEMS;
    let base = r * kq;
    let per_part = CHUNK / LANE_ITEMS / max(params.unit, 1u);
    let end = min(kq, (p + 1u) * per_part);
    partial[r * params.parts_total + params.parts_offset + p] = serial_sum(0u, params.mode, base, p * per_part, end);
}
