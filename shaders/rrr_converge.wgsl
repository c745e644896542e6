// The convergence check of RRR iterations on the device. Dispatched after
// the iterations that end a check (every `check_every` iterations of a
// call, and its last): it scans the RRR_err history slots of the
// iterations since the previous check (slot = iteration % history), marks
// each group whose error sum fell below tol² · K (RRR_err < tol), and stops
// the run once every group has been below: rrr_step and the bias sums then
// leave the state alone, so the host can queue iterations past a check
// without waiting for its result, and they change nothing.
// state: [degenerate, not converged, iterations scanned, stopped,
// iterations at the stop, below flag per group]. Two dispatches: one
// invocation per group scans its slots (rrr_converge_groups), then one
// invocation takes the verdict (rrr_converge), so that no invocation walks
// groups × iterations (llvmpipe ends an invocation's loops after 65,535
// iterations).
// Mirrors src/kernels/rrr_converge.rs.

//!entry
struct ConvergeParams {
    groups: u32,
    hist_parts: u32,
    history: u32,
    check_every: u32,
    end: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ConvergeParams;
// [tol² · K]; negative: no stop
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> hist: array<real>;
@group(0) @binding(3) var<storage, read_write> state: array<atomic<u32>>;

// The iterations since the previous check: [first, last).
fn check_range() -> vec2<u32> {
    let first = atomicLoad(&state[2]);
    return vec2<u32>(first, min(first + params.check_every, params.end));
}

@compute @workgroup_size(64)
fn rrr_converge_groups(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (g >= params.groups || atomicLoad(&state[3]) != 0u) {
        return;
    }
    let range = check_range();
    let gp = params.groups * params.hist_parts;
    for (var it = range.x; it < range.y; it++) {
        let base = (it % params.history) * gp + g * params.hist_parts;
        var s = real(0.0);
        for (var p = 0u; p < params.hist_parts; p++) {
            s += hist[base + p];
        }
        if (s < scalars[0]) {
            atomicStore(&state[5u + g], 1u);
        }
    }
}

@compute @workgroup_size(1)
fn rrr_converge() {
    if (atomicLoad(&state[3]) != 0u) {
        return;
    }
    let last = check_range().y;
    var all = true;
    for (var g = 0u; g < params.groups; g++) {
        all = all && atomicLoad(&state[5u + g]) != 0u;
    }
    atomicStore(&state[2], last);
    if (all) {
        atomicStore(&state[3], 1u);
        atomicStore(&state[4], last);
    }
}
