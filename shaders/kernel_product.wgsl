// Kernel-matrix products without the matrix: for the rows i ∈ [row0,
// row0 + rows) of A (d columns) against all n rows of B,
//   out[i][c] = Σ_j w_ij f(‖a_i − b_j‖²) M[j][c]      (M is n × r)
// f = exp(−g s) (Gaussian, g = 1/2σ²) or √s (distance); w_ij = Γ_ij =
// [y_i = y_j] − p_{y_i} − p_{y_j} + ‖p‖² when use_gamma, else 1; and f = 0
// on i == j when zero_diag; with `squares`, column r of the output (then
// r + 1 wide) is Σ_j (w_ij f_ij)². K is built a tile at a time in workgroup
// memory, so n × n never exists anywhere. Gaussian distances come from
// ‖a‖² + ‖b‖² − 2a·b (the host shifts both sets by B's mean and puts the
// squared norms in `scalars`); distances themselves from Σ (a − b)², whose
// small values the cancelling form would lose under the square root.
// Mirrors src/kernels/kernel_product.rs; exp_neg comes from gauss_kernel.wgsl.

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
    // Offsets in `scalars` of ‖a_i‖² (i over all of A) and ‖b_j‖².
    norm_a: u32,
    norm_b: u32,
    // This dispatch's rows [j_begin, j_end) of B (j_begin a multiple of 16),
    // and whether the sums go on from the output's (a product split over
    // dispatches, which adds in the same order as one dispatch).
    j_begin: u32,
    j_end: u32,
    resume: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: ProductParams;
// scalars = [g, ‖p‖², p_0, p_1, …, then the squared norms for the Gaussian].
@group(0) @binding(1) var<storage, read> scalars: array<real>;
@group(0) @binding(2) var<storage, read> a: array<real>;
@group(0) @binding(3) var<storage, read> b: array<real>;
@group(0) @binding(4) var<storage, read> m: array<real>;
// Labels of A's rows, then (from lb_off) those of B's rows.
@group(0) @binding(5) var<storage, read> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<real>;

// 256 invocations per workgroup, 64 rows of A each. A step over B takes 16
// of its rows: the 64 × 16 kernel tile (each invocation a 2 × 2 block of
// it, its rows and columns held in registers across the features), then
// the output tile += K M, with M's 16 rows staged in workgroup memory.
// Output tiles are 64 × 64 (4 × 4 per invocation) when the output is more
// than 16 wide, else 64 × 16 (2 × 2 per invocation). Every output sums
// j = 0, 1, … in order, so row tiles and parts of A give the same bits.
const TI: u32 = 64u;
const TJ: u32 = 16u;
var<workgroup> ktile: array<real, 1024>;
var<workgroup> mtile: array<real, 1024>;

// w_ij f(s) for local row il and row j of B; 0 outside the tile.
fn pair_value(il: u32, j: u32, s: real) -> real {
    if (il >= params.rows || j >= params.n) {
        return real(0.0);
    }
    let i = params.row0 + il;
    if (params.zero_diag != 0u && i == j) {
        return real(0.0);
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

// Fills ktile with the kernel values of local rows [i0, i0 + 64) against
// rows [j0, j0 + 16) of B.
fn kernel_tile(i0: u32, j0: u32, lid: u32) {
    let d = params.d;
    let pi = (lid / 8u) * 2u;
    let pj = (lid % 8u) * 2u;
    // Out-of-range rows read row 0 / the last row and are masked later.
    let last = params.rows - 1u;
    let ia0 = params.row0 + min(i0 + pi, last);
    let ia1 = params.row0 + min(i0 + pi + 1u, last);
    let jb0 = min(j0 + pj, params.n - 1u);
    let jb1 = min(j0 + pj + 1u, params.n - 1u);
    var s00 = real(0.0);
    var s01 = real(0.0);
    var s10 = real(0.0);
    var s11 = real(0.0);
    if (params.func == 0u) {
        for (var c = 0u; c < d; c++) {
            let x0 = a[ia0 * d + c];
            let x1 = a[ia1 * d + c];
            let y0 = b[jb0 * d + c];
            let y1 = b[jb1 * d + c];
            s00 += x0 * y0;
            s01 += x0 * y1;
            s10 += x1 * y0;
            s11 += x1 * y1;
        }
        let na0 = scalars[params.norm_a + ia0];
        let na1 = scalars[params.norm_a + ia1];
        let nb0 = scalars[params.norm_b + jb0];
        let nb1 = scalars[params.norm_b + jb1];
        s00 = max(na0 + nb0 - real(2.0) * s00, real(0.0));
        s01 = max(na0 + nb1 - real(2.0) * s01, real(0.0));
        s10 = max(na1 + nb0 - real(2.0) * s10, real(0.0));
        s11 = max(na1 + nb1 - real(2.0) * s11, real(0.0));
    } else {
        for (var c = 0u; c < d; c++) {
            let x0 = a[ia0 * d + c];
            let x1 = a[ia1 * d + c];
            let y0 = b[jb0 * d + c];
            let y1 = b[jb1 * d + c];
            let t00 = x0 - y0;
            let t01 = x0 - y1;
            let t10 = x1 - y0;
            let t11 = x1 - y1;
            s00 += t00 * t00;
            s01 += t01 * t01;
            s10 += t10 * t10;
            s11 += t11 * t11;
        }
    }
    ktile[pi * TJ + pj] = pair_value(i0 + pi, j0 + pj, s00);
    ktile[pi * TJ + pj + 1u] = pair_value(i0 + pi, j0 + pj + 1u, s01);
    ktile[(pi + 1u) * TJ + pj] = pair_value(i0 + pi + 1u, j0 + pj, s10);
    ktile[(pi + 1u) * TJ + pj + 1u] = pair_value(i0 + pi + 1u, j0 + pj + 1u, s11);
}

// Stages M's rows [j0, j0 + 16), columns [c0, c0 + tc), into mtile
// (zeros past n and past column r, the squares column included).
fn stage_m(j0: u32, c0: u32, tc: u32, lid: u32) {
    for (var e = lid; e < TJ * tc; e += 256u) {
        let j = j0 + e / tc;
        let c = c0 + e % tc;
        var v = real(0.0);
        if (j < params.n && c < params.r) {
            v = m[j * params.r + c];
        }
        mtile[e] = v;
    }
}

// Wide outputs: a 64 × 64 tile, 4 × 4 per invocation.
fn wide(rt: u32, ct: u32, lid: u32) {
    let i0 = rt * TI;
    let c0 = ct * 64u;
    let ti = (lid / 16u) * 4u;
    let tc = (lid % 16u) * 4u;
    let w = params.r + params.squares;
    // The invocation whose columns hold column r sums the squares there.
    let own_sq = params.squares != 0u && params.r >= c0 + tc && params.r < c0 + tc + 4u;
    // Rows ti .. ti + 3 of the output block as vectors over its 4 columns.
    var acc0 = vec4<real>();
    var acc1 = vec4<real>();
    var acc2 = vec4<real>();
    var acc3 = vec4<real>();
    var sq = vec4<real>();
    if (params.resume != 0u) {
        for (var x = 0u; x < 4u; x++) {
            let il = i0 + ti + x;
            if (il < params.rows) {
                var row = vec4<real>();
                for (var y = 0u; y < 4u; y++) {
                    let c = c0 + tc + y;
                    if (c < params.r) {
                        row[y] = out[il * w + c];
                    } else if (c < w) {
                        sq[x] = out[il * w + c];
                    }
                }
                if (x == 0u) {
                    acc0 = row;
                } else if (x == 1u) {
                    acc1 = row;
                } else if (x == 2u) {
                    acc2 = row;
                } else {
                    acc3 = row;
                }
            }
        }
    }
    for (var j0 = params.j_begin; j0 < params.j_end; j0 += TJ) {
        kernel_tile(i0, j0, lid);
        stage_m(j0, c0, 64u, lid);
        workgroupBarrier();
        for (var jj = 0u; jj < TJ; jj++) {
            let mb = jj * 64u + tc;
            let mr = vec4<real>(mtile[mb], mtile[mb + 1u], mtile[mb + 2u], mtile[mb + 3u]);
            let kr = vec4<real>(
                ktile[ti * TJ + jj],
                ktile[(ti + 1u) * TJ + jj],
                ktile[(ti + 2u) * TJ + jj],
                ktile[(ti + 3u) * TJ + jj],
            );
            acc0 += kr.x * mr;
            acc1 += kr.y * mr;
            acc2 += kr.z * mr;
            acc3 += kr.w * mr;
            if (own_sq) {
                sq += kr * kr;
            }
        }
        workgroupBarrier();
    }
    for (var x = 0u; x < 4u; x++) {
        let il = i0 + ti + x;
        if (il < params.rows) {
            var row = acc0;
            if (x == 1u) {
                row = acc1;
            } else if (x == 2u) {
                row = acc2;
            } else if (x == 3u) {
                row = acc3;
            }
            for (var y = 0u; y < 4u; y++) {
                let c = c0 + tc + y;
                if (c < params.r) {
                    out[il * w + c] = row[y];
                } else if (c < w) {
                    out[il * w + c] = sq[x];
                }
            }
        }
    }
}

// Thin outputs (at most 16 wide: one-hot labels, unit indicators): a
// 64 × 16 tile, 2 × 2 per invocation.
fn thin(rt: u32, lid: u32) {
    let i0 = rt * TI;
    let ti = (lid / 8u) * 2u;
    let tc = (lid % 8u) * 2u;
    let w = params.r + params.squares;
    let own_sq = params.squares != 0u && params.r >= tc && params.r < tc + 2u;
    var acc: array<real, 4>;
    var sq: array<real, 2>;
    if (params.resume != 0u) {
        for (var x = 0u; x < 2u; x++) {
            let il = i0 + ti + x;
            if (il < params.rows) {
                for (var y = 0u; y < 2u; y++) {
                    let c = tc + y;
                    if (c < params.r) {
                        acc[x * 2u + y] = out[il * w + c];
                    } else if (c < w) {
                        sq[x] = out[il * w + c];
                    }
                }
            }
        }
    }
    for (var j0 = params.j_begin; j0 < params.j_end; j0 += TJ) {
        kernel_tile(i0, j0, lid);
        stage_m(j0, 0u, 16u, lid);
        workgroupBarrier();
        for (var jj = 0u; jj < TJ; jj++) {
            let k0 = ktile[ti * TJ + jj];
            let k1 = ktile[(ti + 1u) * TJ + jj];
            let m0 = mtile[jj * 16u + tc];
            let m1 = mtile[jj * 16u + tc + 1u];
            acc[0] += k0 * m0;
            acc[1] += k0 * m1;
            acc[2] += k1 * m0;
            acc[3] += k1 * m1;
            if (own_sq) {
                sq[0] += k0 * k0;
                sq[1] += k1 * k1;
            }
        }
        workgroupBarrier();
    }
    for (var x = 0u; x < 2u; x++) {
        let il = i0 + ti + x;
        if (il < params.rows) {
            for (var y = 0u; y < 2u; y++) {
                let c = tc + y;
                if (c < params.r) {
                    out[il * w + c] = acc[x * 2u + y];
                } else if (c < w) {
                    out[il * w + c] = sq[x];
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn kernel_product(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.y * nwg.x + wid.x;
    let w = params.r + params.squares;
    let tc = select(64u, 16u, w <= 16u);
    let col_tiles = (w + tc - 1u) / tc;
    let row_tiles = (params.rows + TI - 1u) / TI;
    if (wg >= row_tiles * col_tiles) {
        return;
    }
    if (w <= 16u) {
        thin(wg, lid);
    } else {
        wide(wg / col_tiles, wg % col_tiles, lid);
    }
}
