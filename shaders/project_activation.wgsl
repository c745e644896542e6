// Activation and class projections of (x, y, b) with unit weights (SPEC 2.2, 2.3).
// Mirrors src/kernels/project_activation.rs; ties break as the reference C code.

const ACT_RELU: u32 = 0u;
const ACT_CLASS_CORRECT: u32 = 1u;
const ACT_CLASS_WRONG: u32 = 2u;
const ACT_ZIGMOID: u32 = 3u;
const ACT_STEP: u32 = 4u;
const ACT_FIXED: u32 = 5u;

// Graph x = max(0, y - b).
fn relu_proj(x: real, y: real, b: real) -> vec3<real> {
    var c1 = vec3<real>(0.0, y, b);
    var d1 = x * x;
    if (!(y < b)) {
        let s = (y - b) * 0.5;
        c1 = vec3<real>(0.0, y - s, y - s);
        d1 = x * x + 2.0 * s * s;
    }
    let s2 = (x - y + b) / 3.0;
    var c2 = vec3<real>(x - s2, y + s2, b - s2);
    var d2 = 3.0 * s2 * s2;
    if (x - s2 < 0.0) {
        let s3 = (y - b) * 0.5;
        c2 = vec3<real>(0.0, y - s3, y - s3);
        d2 = x * x + 2.0 * s3 * s3;
    }
    if (d1 < d2) {
        return c1;
    }
    return c2;
}

// Class margin: correct class y - b >= margin, others y - b <= 0.
fn class_proj(y: real, b: real, correct: bool, margin: real) -> vec2<real> {
    let z = y - b;
    if (correct) {
        if (z < margin) {
            let s = (z - margin) * 0.5;
            return vec2<real>(y - s, b + s);
        }
    } else if (z > 0.0) {
        let s = z * 0.5;
        return vec2<real>(y - s, b + s);
    }
    return vec2<real>(y, b);
}

// Zero branch (x' = 0, y' - b' <= -m): returns (x', y', b', d).
fn act_zero(x: real, y: real, b: real, m: real) -> vec4<real> {
    let s = (y - b + m) * 0.5;
    if (s < 0.0) {
        return vec4<real>(0.0, y, b, x * x);
    }
    return vec4<real>(0.0, y - s, b + s, x * x + 2.0 * s * s);
}

// One branch (x' = 1, y' - b' >= m).
fn act_one(x: real, y: real, b: real, m: real) -> vec4<real> {
    let s = (y - b - m) * 0.5;
    let dx = 1.0 - x;
    if (s > 0.0) {
        return vec4<real>(1.0, y, b, dx * dx);
    }
    return vec4<real>(1.0, y - s, b + s, dx * dx + 2.0 * s * s);
}

// Zigmoid: 0 (z <= -m), (z+m)/(2m) (|z| < m), 1 (z >= m); m = half-width.
fn zigmoid_proj(x: real, y: real, b: real, m: real) -> vec3<real> {
    let zero = act_zero(x, y, b, m);
    let one = act_one(x, y, b, m);
    let k = 1.0 + 0.5 / (m * m);
    let s = (x - (y - b) / (2.0 * m) - 0.5) / k;
    let xr = x - s;
    var dz = k * s * s;
    if (xr < 0.0 || xr > 1.0) {
        dz = 1e10;
    }
    let ramp = vec3<real>(xr, y + s / (2.0 * m), b - s / (2.0 * m));
    if (zero.w < one.w) {
        if (dz < zero.w) {
            return ramp;
        }
        return zero.xyz;
    }
    if (dz < one.w) {
        return ramp;
    }
    return one.xyz;
}

// Gapped step: x' in {0, 1} with |y' - b'| >= m.
fn step_proj(x: real, y: real, b: real, m: real) -> vec3<real> {
    let zero = act_zero(x, y, b, m);
    let one = act_one(x, y, b, m);
    if (zero.w < one.w) {
        return zero.xyz;
    }
    return one.xyz;
}

// Node whose x is fixed: move (y, b) so that act(y - b) = x_fixed.
fn fixed_proj(x_fixed: real, y: real, b: real, m: real) -> vec2<real> {
    let z = y - b;
    if (x_fixed == 0.0) {
        let s = (z + m) * 0.5;
        if (s > 0.0) {
            return vec2<real>(y - s, b + s);
        }
        return vec2<real>(y, b);
    }
    if (x_fixed == 1.0) {
        let s = (z - m) * 0.5;
        if (s < 0.0) {
            return vec2<real>(y - s, b + s);
        }
        return vec2<real>(y, b);
    }
    let s = (z + m * (1.0 - 2.0 * x_fixed)) * 0.5;
    return vec2<real>(y - s, b + s);
}

// Dispatch on an ACT_* kind; `m` is the class margin for class kinds.
fn project_act(kind: u32, x: real, y: real, b: real, m: real) -> vec3<real> {
    switch kind {
        case ACT_RELU: {
            return relu_proj(x, y, b);
        }
        case ACT_CLASS_CORRECT, ACT_CLASS_WRONG: {
            let o = class_proj(y, b, kind == ACT_CLASS_CORRECT, m);
            return vec3<real>(x, o.x, o.y);
        }
        case ACT_ZIGMOID: {
            return zigmoid_proj(x, y, b, m);
        }
        case ACT_STEP: {
            return step_proj(x, y, b, m);
        }
        case ACT_FIXED: {
            let o = fixed_proj(x, y, b, m);
            return vec3<real>(x, o.x, o.y);
        }
        default: {
            return vec3<real>(x, y, b);
        }
    }
}

//!entry
struct ActParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ActParams;
@group(0) @binding(1) var<storage, read> kinds: array<u32>;
@group(0) @binding(2) var<storage, read> margins: array<real>;
@group(0) @binding(3) var<storage, read_write> xs: array<real>;
@group(0) @binding(4) var<storage, read_write> ys: array<real>;
@group(0) @binding(5) var<storage, read_write> bs: array<real>;

// In place, one invocation per element.
@compute @workgroup_size(64)
fn project_activation(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= params.n) {
        return;
    }
    let o = project_act(kinds[i], xs[i], ys[i], bs[i], margins[i]);
    xs[i] = o.x;
    ys[i] = o.y;
    bs[i] = o.z;
}
