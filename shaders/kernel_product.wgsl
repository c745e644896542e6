// Kernel-matrix products without the matrix: for the rows i ∈ [row0,
// row0 + rows) of A (d columns) against all n rows of B,
//   out[i][c] = Σ_j w_ij f(‖a_i − b_j‖²) M[j][c]      (M is n × r)
// f = exp(−g s) (Gaussian, g = 1/2σ²) or √s (distance); w_ij = Γ_ij =
// [y_i = y_j] − p_{y_i} − p_{y_j} + ‖p‖² when use_gamma, else 1; and f = 0
// on i == j when zero_diag; with `squares`, column r of the output (then
// r + 1 wide) is Σ_j (w_ij f_ij)². K is built a tile at a time in workgroup
// memory, so n × n never exists anywhere. Mirrors src/kernels/kernel_product.rs;
// exp_neg comes from gauss_kernel.wgsl.

//!entry
struct ProductParams {
    rows: u32,
    row0: u32,
    n: u32,
    d: u32,
    r: u32,
    func: u32,
    zero_diag: u32,
    use_gamma: u32,
    lb_off: u32,
    squares: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: ProductParams;
// scalars = [g, ‖p‖², p_0, p_1, …].
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> a: array<real>;
@group(0) @binding(3) var<storage, read> b: array<real>;
@group(0) @binding(4) var<storage, read> m: array<real>;
// Labels of A's rows, then (from lb_off) those of B's rows.
@group(0) @binding(5) var<storage, read> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<real>;

// 64 invocations. Wide outputs (more than 16 columns): 16 rows × 4 column
// groups of 16, tiles of 64 B rows. Thin outputs (the common case: one-hot
// labels, unit indicators): 64 rows × 1 group of 16, tiles of 16 B rows,
// so no invocation idles while accumulating. Either way the kernel tile
// holds 1024 values. CPT = columns per invocation.
const CPT: u32 = 16u;

var<workgroup> ktile: array<real, 1024>;

fn weight_fn(il: u32, j: u32) -> real {
    let i = params.row0 + il;
    if (params.zero_diag != 0u && i == j) {
        return real(0.0);
    }
    let d = params.d;
    var s = real(0.0);
    for (var c = 0u; c < d; c++) {
        let t = a[i * d + c] - b[j * d + c];
        s += t * t;
    }
    var f: real;
    if (params.func == 0u) {
        f = exp_neg(s * scalars[0]);
    } else {
        f = sqrt(s);
    }
    if (params.use_gamma != 0u) {
        let yi = labels[i];
        let yj = labels[params.lb_off + j];
        var gam = scalars[1] - scalars[2u + yi] - scalars[2u + yj];
        if (yi == yj) {
            gam += real(1.0);
        }
        f *= gam;
    }
    return f;
}

@compute @workgroup_size(64)
fn kernel_product(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.y * nwg.x + wid.x;
    let r = params.r;
    let n = params.n;
    // Output width; the squares column is one more column of the tiles.
    let w = r + params.squares;
    let thin = w <= CPT;
    let TI = select(16u, 64u, thin);
    let TJ = 1024u / TI;
    let groups = 64u / TI;
    let TC = groups * CPT;
    let col_tiles = (w + TC - 1u) / TC;
    let row_tiles = (params.rows + TI - 1u) / TI;
    if (wg >= row_tiles * col_tiles) {
        return;
    }
    let rt = wg / col_tiles;
    let ct = wg - rt * col_tiles;
    let ti = lid / groups;
    let il = rt * TI + ti;
    let c0 = ct * TC + (lid % groups) * CPT;
    var acc: array<real, 16>;
    for (var c = 0u; c < CPT; c++) {
        acc[c] = real(0.0);
    }
    // This invocation's columns of M end at `mc`; column r (if squares)
    // takes Σ f² in the accumulator slot r − c0.
    let mc = min(r, c0 + CPT);
    let sq_slot = params.squares != 0u && r >= c0 && r < c0 + CPT;
    for (var j0 = 0u; j0 < n; j0 += TJ) {
        // Each invocation fills 16 of the tile's 1024 kernel values.
        for (var e = lid; e < 1024u; e += 64u) {
            let ie = rt * TI + e / TJ;
            let je = j0 + e % TJ;
            var v = real(0.0);
            if (ie < params.rows && je < n) {
                v = weight_fn(ie, je);
            }
            ktile[e] = v;
        }
        workgroupBarrier();
        if (il < params.rows) {
            let jn = min(TJ, n - j0);
            for (var jj = 0u; jj < jn; jj++) {
                let kv = ktile[ti * TJ + jj];
                let row = (j0 + jj) * r;
                for (var c = c0; c < mc; c++) {
                    acc[c - c0] += kv * m[row + c];
                }
                if (sq_slot) {
                    acc[r - c0] += kv * kv;
                }
            }
        }
        workgroupBarrier();
    }
    if (il < params.rows) {
        for (var c = 0u; c < CPT; c++) {
            if (c0 + c < w) {
                out[il * w + c0 + c] = acc[c];
            }
        }
    }
}
