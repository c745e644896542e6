// Conv-unpool layer operators (StarNet), for the items of one chunk. A layer
// maps h (c_in × side², per item) by a stride-1 k × k convolution with zero
// "same" padding (r = (k − 1)/2) to c_out·u² channels, then depth-to-space:
//   y[o][p][q]  = bias[o] + Σ_{ci,a,b} K[o][ci][a][b] h[ci][p+a−r][q+b−r]
//   out[D(o,p,q)] = y[o][p][q],  D(o,p,q) = co·S² + (u p + s)·S + u q + t
//   with o = co·u² + s·u + t and S = u·side.
// Entry points:
//   conv_forward:   out = act(W h + c) per item (the decoder's layer);
//   conv_transpose: out = Wᵀ z per item (the latent solve's right-hand side);
//   conv_normal_eq: the per-kernel normal equations over every position of
//     every item, with X = [patch, 1] and Y = [patch, 1, ẑ_o]:
//       c[α][β] = Σ_{item,pos} X[α] Y[β]   ((P+1) × (P+1+oc), P = c_in·k²)
//     built like normal_eq.wgsl with the patches gathered on the fly; the
//     host adds the chunks' partial sums (the allreduce seam).
// Mirrors src/kernels/conv_unpool.rs.

//!entry
struct ConvParams {
    items: u32,
    c_in: u32,
    c_out: u32,
    k: u32,
    u: u32,
    side: u32,
    act: u32,
    _pad: u32,
    // conv_normal_eq: this dispatch's (item, position) rows [row_begin,
    // row_end) (row_begin a multiple of 16), and whether the sums go on
    // from the output's (a chunk split over dispatches, which adds in the
    // same order as one dispatch).
    row_begin: u32,
    row_end: u32,
    resume: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: ConvParams;
// scalars[0] = leaky slope α.
@group(0) @binding(1) var<storage, read> scalars: array<real>;
// forward, normal_eq: h (items × c_in·side²); transpose: z (items × d_out).
@group(0) @binding(2) var<storage, read> src0: array<real>;
// forward, transpose: kernels K (oc × P); normal_eq: ẑ (items × d_out).
@group(0) @binding(3) var<storage, read> src1: array<real>;
@group(0) @binding(4) var<storage, read> bias: array<real>;
@group(0) @binding(5) var<storage, read_write> out: array<real>;

fn conv_channels() -> u32 {
    return params.c_out * params.u * params.u;
}

fn d_in() -> u32 {
    return params.c_in * params.side * params.side;
}

fn d_out() -> u32 {
    let s = params.u * params.side;
    return params.c_out * s * s;
}

fn out_index(o: u32, p: u32, q: u32) -> u32 {
    let uu = params.u * params.u;
    let so = params.u * params.side;
    let co = o / uu;
    let rem = o % uu;
    return co * so * so + (params.u * p + rem / params.u) * so + params.u * q + rem % params.u;
}

fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

fn leaky(v: real) -> real {
    if (v >= real(0.0) || params.act == 0u) {
        return v;
    }
    if (params.act == 2u) {
        return v / scalars[0];
    }
    return v * scalars[0];
}

@compute @workgroup_size(64)
fn conv_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = flat_id(wid, nwg, lid);
    let side = params.side;
    let ss = side * side;
    let oc = conv_channels();
    if (g >= params.items * oc * ss) {
        return;
    }
    let n = g / (oc * ss);
    let o = (g / ss) % oc;
    let pos = g % ss;
    let p = pos / side;
    let q = pos % side;
    let k = params.k;
    let r = k / 2u;
    let plen = params.c_in * k * k;
    let hbase = n * d_in();
    var acc = real(0.0);
    for (var ci = 0u; ci < params.c_in; ci++) {
        for (var a = 0u; a < k; a++) {
            // y = p + a − r, in [0, side).
            if (p + a < r || p + a - r >= side) {
                continue;
            }
            let y = p + a - r;
            for (var b = 0u; b < k; b++) {
                if (q + b < r || q + b - r >= side) {
                    continue;
                }
                let x = q + b - r;
                acc += src1[o * plen + (ci * k + a) * k + b] * src0[hbase + ci * ss + y * side + x];
            }
        }
    }
    out[n * d_out() + out_index(o, p, q)] = leaky(acc + bias[o]);
}

@compute @workgroup_size(64)
fn conv_transpose(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = flat_id(wid, nwg, lid);
    let side = params.side;
    let ss = side * side;
    if (g >= params.items * params.c_in * ss) {
        return;
    }
    let n = g / (params.c_in * ss);
    let ci = (g / ss) % params.c_in;
    let pos = g % ss;
    let y = pos / side;
    let x = pos % side;
    let k = params.k;
    let r = k / 2u;
    let plen = params.c_in * k * k;
    let zbase = n * d_out();
    var acc = real(0.0);
    for (var o = 0u; o < conv_channels(); o++) {
        for (var a = 0u; a < k; a++) {
            // p = y − a + r, in [0, side).
            if (y + r < a || y + r - a >= side) {
                continue;
            }
            let p = y + r - a;
            for (var b = 0u; b < k; b++) {
                if (x + r < b || x + r - b >= side) {
                    continue;
                }
                let q = x + r - b;
                acc += src1[o * plen + (ci * k + a) * k + b] * src0[zbase + out_index(o, p, q)];
            }
        }
    }
    out[n * d_in() + ci * ss + y * side + x] = acc;
}

const T: u32 = 16u;
var<workgroup> xs: array<real, 256>;
var<workgroup> ys: array<real, 256>;

// Patch element t (ci, a, b) at row (item n, position pos), or 0 off the image.
fn patch_at(n: u32, pos: u32, t: u32) -> real {
    let k = params.k;
    let side = params.side;
    let r = k / 2u;
    let ci = t / (k * k);
    let a = (t / k) % k;
    let b = t % k;
    let p = pos / side;
    let q = pos % side;
    if (p + a < r || p + a - r >= side || q + b < r || q + b - r >= side) {
        return real(0.0);
    }
    return src0[n * d_in() + ci * side * side + (p + a - r) * side + q + b - r];
}

@compute @workgroup_size(256)
fn conv_normal_eq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.y * nwg.x + wid.x;
    let pl = params.c_in * params.k * params.k;
    let rows = pl + 1u;
    let cols = pl + 1u + conv_channels();
    let col_tiles = (cols + T - 1u) / T;
    let row_tiles = (rows + T - 1u) / T;
    if (wg >= row_tiles * col_tiles) {
        return;
    }
    let a0 = (wg / col_tiles) * T;
    let b0 = (wg % col_tiles) * T;
    let ta = lid / T;
    let tb = lid % T;
    let ss = params.side * params.side;
    let total = params.items * ss;
    let a = a0 + ta;
    let b = b0 + tb;
    var acc = real(0.0);
    if (params.resume != 0u && a < rows && b < cols) {
        acc = out[a * cols + b];
    }
    for (var i0 = params.row_begin; i0 < min(total, params.row_end); i0 += T) {
        // Slab of 16 (item, position) rows: xs[row][α], ys[row][β].
        let it = i0 + ta;
        var xv = real(0.0);
        var yv = real(0.0);
        if (it < total) {
            let n = it / ss;
            let pos = it % ss;
            let a = a0 + tb;
            if (a < pl) {
                xv = patch_at(n, pos, a);
            } else if (a == pl) {
                xv = real(1.0);
            }
            let b = b0 + tb;
            if (b < pl) {
                yv = patch_at(n, pos, b);
            } else if (b == pl) {
                yv = real(1.0);
            } else if (b < cols) {
                yv = src1[n * d_out() + out_index(b - pl - 1u, pos / params.side, pos % params.side)];
            }
        }
        xs[lid] = xv;
        ys[lid] = yv;
        workgroupBarrier();
        for (var l = 0u; l < T; l++) {
            acc += xs[l * T + ta] * ys[l * T + tb];
        }
        workgroupBarrier();
    }
    if (a < rows && b < cols) {
        out[a * cols + b] = acc;
    }
}
