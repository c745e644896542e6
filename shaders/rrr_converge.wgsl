// The convergence check of RRR iterations on the device. Dispatched after
// the iterations that end a check (every `check_every` iterations of a
// call, and its last): it scans the RRR_err history slots of the
// iterations since the previous check (slot = iteration % history), marks
// each group whose error sum fell below tol² · K (RRR_err < tol), and stops
// the run once every group has been below: rrr_step and the bias sums then
// leave the state alone, so the host can queue iterations past a check
// without waiting for its result, and they change nothing.
// state: [degenerate, not converged, iterations scanned, stopped,
// iterations at the stop, below flag per group]. One invocation.
// Mirrors src/kernels/rrr_converge.rs.

// One check with threshold tol2k, over params' groups, hist_parts, history,
// check_every and end, the history `hist` and the state through
// state_load and state_store (globals and accessors of the including
// shader).
fn converge_check(tol2k: real) {
    if (state_load(3u) != 0u) {
        return;
    }
    let first = state_load(2u);
    let last = min(first + params.check_every, params.end);
    let gp = params.groups * params.hist_parts;
    var all = true;
    for (var g = 0u; g < params.groups; g++) {
        for (var it = first; it < last; it++) {
            let base = (it % params.history) * gp + g * params.hist_parts;
            var s = real(0.0);
            for (var p = 0u; p < params.hist_parts; p++) {
                s += hist[base + p];
            }
            if (s < tol2k) {
                state_store(5u + g, 1u);
            }
        }
        all = all && state_load(5u + g) != 0u;
    }
    state_store(2u, last);
    if (all) {
        state_store(3u, 1u);
        state_store(4u, last);
    }
}

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
@group(0) @binding(3) var<storage, read_write> state: array<u32>;

fn state_load(i: u32) -> u32 {
    return state[i];
}

fn state_store(i: u32, v: u32) {
    state[i] = v;
}

@compute @workgroup_size(1)
fn rrr_converge() {
    converge_check(scalars[0]);
}
