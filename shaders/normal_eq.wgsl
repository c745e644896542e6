// Normal-equation build over a block of items: with X = [H, 1] (items × (p+1))
// and Y = [H, 1, Z] (items × (p+1+q)),
//   c[a][b] = Σ_i X[i][a] Y[i][b]   ((p+1) × (p+1+q): the Gram matrix, then the
//   right-hand side)
// The ones column is implicit. Each workgroup owns a 64 × 64 tile of c (4 × 4
// per invocation) and walks the block's items 16 at a time through
// workgroup memory. The host
// adds the blocks' partial sums (the seam for an allreduce across devices).
// Mirrors src/kernels/normal_eq.rs.

//!entry
struct NormalParams {
    items: u32,
    p: u32,
    q: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: NormalParams;
@group(0) @binding(1) var<storage, read> h: array<real>;
@group(0) @binding(2) var<storage, read> z: array<real>;
@group(0) @binding(3) var<storage, read_write> c: array<real>;

// 64 × 64 tiles of c, 4 × 4 per invocation in registers; the items pass
// 16 at a time through workgroup memory, each sum in item order.
const TM: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> xs: array<real, 1024>;
var<workgroup> ys: array<real, 1024>;

fn x_at(i: u32, a: u32) -> real {
    if (a < params.p) {
        return h[i * params.p + a];
    }
    return real(1.0);
}

fn y_at(i: u32, b: u32) -> real {
    let p = params.p;
    if (b < p) {
        return h[i * p + b];
    }
    if (b == p) {
        return real(1.0);
    }
    return z[i * params.q + b - p - 1u];
}

@compute @workgroup_size(256)
fn normal_eq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.y * nwg.x + wid.x;
    let rows = params.p + 1u;
    let cols = params.p + 1u + params.q;
    let col_tiles = (cols + TM - 1u) / TM;
    let row_tiles = (rows + TM - 1u) / TM;
    if (wg >= row_tiles * col_tiles) {
        return;
    }
    let a0 = (wg / col_tiles) * TM;
    let b0 = (wg % col_tiles) * TM;
    let ta = (lid / 16u) * 4u;
    let tb = (lid % 16u) * 4u;
    var acc: array<real, 16>;
    for (var i0 = 0u; i0 < params.items; i0 += TK) {
        // Slab of 16 items: xs[item][a], ys[item][b].
        for (var q = 0u; q < 4u; q++) {
            let e = lid + 256u * q;
            let it = i0 + e / TM;
            let col = e % TM;
            var xv = real(0.0);
            var yv = real(0.0);
            if (it < params.items) {
                if (a0 + col < rows) {
                    xv = x_at(it, a0 + col);
                }
                if (b0 + col < cols) {
                    yv = y_at(it, b0 + col);
                }
            }
            xs[e] = xv;
            ys[e] = yv;
        }
        workgroupBarrier();
        for (var l = 0u; l < TK; l++) {
            var xr: array<real, 4>;
            var yr: array<real, 4>;
            for (var r = 0u; r < 4u; r++) {
                xr[r] = xs[l * TM + ta + r];
                yr[r] = ys[l * TM + tb + r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var t = 0u; t < 4u; t++) {
                    acc[r * 4u + t] += xr[r] * yr[t];
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        for (var t = 0u; t < 4u; t++) {
            let a = a0 + ta + r;
            let b = b0 + tb + t;
            if (a < rows && b < cols) {
                c[a * cols + b] = acc[r * 4u + t];
            }
        }
    }
}
