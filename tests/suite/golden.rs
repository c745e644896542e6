//! The reference C code's golden vectors (../shared/golden/rrr_golden.json),
//! reproduced by both backends. The file is not part of the repository: when
//! it is absent (GRADFREE_GOLDEN unset and no ../shared beside the checkout)
//! these tests say so and pass vacuously.
//!
//! Tolerances (see the golden README): f64 — well-conditioned cases (|u| < 0.9,
//! x, w not nearly parallel) 1e-12 relative to max(|x'|∞, |w'|∞); all other
//! non-degenerate cases 1e-9 (the reference itself loses digits there).
//! f32 — well-conditioned cases with inputs inside f32's normal range, 2e-5
//! relative. Degenerate cases (no root in (−1, 1)) must be reported as
//! STATUS_DEGENERATE; the reference's numbers there are noise and are not compared.

use crate::support::gpu;
use crate::support::*;
use gradfree::Precision;
use gradfree::kernels::normalize_weights::{Sums, normalize_group};
use gradfree::kernels::project_activation::{self as act, *};
use gradfree::kernels::project_bilinear::*;
use serde_json::Value;

fn golden() -> Option<Value> {
    let path = std::env::var("GRADFREE_GOLDEN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/golden/rrr_golden.json")
        });
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(serde_json::from_str(&s).expect("golden JSON")),
        Err(_) => {
            eprintln!("golden vectors not found at {}: skipped", path.display());
            None
        }
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn fv(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(f).collect()
}

struct Case {
    label: String,
    batch: BilinearBatch,
    want: Option<(Vec<f64>, Vec<f64>, f64, f64)>,
    degenerate: bool,
    well_conditioned: bool,
    f32_range: bool,
}

fn bilinear_cases(g: &Value) -> Vec<Case> {
    let mut out = vec![];
    for fam in ["bilinear_nmf", "bilinear_class"] {
        for c in g[fam].as_array().unwrap() {
            let i = &c["inputs"];
            let (x, w, y) = (fv(&i["x"]), fv(&i["w"]), f(&i["y"]));
            let nmf = fam == "bilinear_nmf";
            let (omega, gg) = if nmf {
                (1.0, 0.0)
            } else {
                (f(&i["omega"]), f(&i["g"]))
            };
            let o = &c["outputs"];
            let degenerate = c["diagnostics"]["degenerate"].as_bool().unwrap_or(false);
            let u = f(&o["u"]);
            let nx: f64 = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let nw: f64 = w.iter().map(|v| v * v).sum::<f64>().sqrt();
            let dot: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let cos = if nx > 0.0 && nw > 0.0 {
                (dot / (nx * nw)).abs()
            } else {
                1.0
            };
            let f32_range = x
                .iter()
                .chain(&w)
                .chain([&y])
                .all(|v| *v == 0.0 || (v.abs() > 1e-30 && v.abs() < 1e30));
            let yn = if nmf { y } else { f(&o["y_new"]) };
            out.push(Case {
                label: format!("{fam}: {}", c["label"].as_str().unwrap()),
                batch: BilinearBatch {
                    ptr: vec![0, x.len() as u32],
                    x,
                    w,
                    y: vec![y],
                    omega: vec![omega],
                    g: vec![gg],
                },
                want: Some((fv(&o["x_new"]), fv(&o["w_new"]), yn, u)),
                degenerate,
                well_conditioned: !degenerate && u.abs() < 0.9 && cos < 0.99,
                f32_range,
            });
        }
    }
    out
}

#[test]
fn golden_bilinear_projections() {
    let Some(g) = golden() else { return };
    let cases = bilinear_cases(&g);
    assert_eq!(cases.len(), 126);
    for (name, be) in backends() {
        let f32 = be.precision() == Precision::F32;
        let mut compared = 0;
        for c in &cases {
            if f32 && !(c.well_conditioned && c.f32_range) {
                continue;
            }
            let got = be.project_bilinear(&c.batch).unwrap();
            if c.degenerate {
                assert_eq!(
                    got.status[0], STATUS_DEGENERATE,
                    "{name} {}: degenerate not reported",
                    c.label
                );
                continue;
            }
            assert_eq!(got.status[0], STATUS_OK, "{name} {}", c.label);
            let (wx, ww, wy, wu) = c.want.clone().unwrap();
            let scale = wx.iter().chain(&ww).fold(0.0f64, |m, v| m.max(v.abs()));
            let rel = if f32 {
                2e-5
            } else if c.well_conditioned {
                1e-12
            } else {
                1e-9
            };
            let at = rel * scale;
            assert_close(&format!("{name} {} x'", c.label), &got.x, &wx, 0.0, at);
            assert_close(&format!("{name} {} w'", c.label), &got.w, &ww, 0.0, at);
            assert_close(&format!("{name} {} y'", c.label), &got.y, &[wy], rel, 0.0);
            assert_close(
                &format!("{name} {} u", c.label),
                &got.u,
                &[wu],
                0.0,
                if f32 { 2e-6 } else { 1e-11 },
            );
            compared += 1;
        }
        assert!(
            compared >= if f32 { 20 } else { 121 },
            "{name}: only {compared} cases compared"
        );
    }
}

#[test]
fn golden_activation_projections() {
    let Some(g) = golden() else { return };
    let mut kinds = vec![];
    let mut margins = vec![];
    let (mut xs, mut ys, mut bs) = (vec![], vec![], vec![]);
    let mut want = vec![];
    let mut labels = vec![];
    for (fam, kind) in [
        ("relu_activation", ACT_RELU),
        ("class_margin", ACT_CLASS_CORRECT),
        ("zigmoid_activation", ACT_ZIGMOID),
        ("step_activation", ACT_STEP),
        ("fixed_value", ACT_FIXED),
    ] {
        for c in g[fam].as_array().unwrap() {
            let i = &c["inputs"];
            let o = &c["outputs"];
            let label = c["label"].as_str().unwrap().to_string();
            let (k, x, m) = match fam {
                "class_margin" => {
                    let correct = i["is_correct_class"].as_bool().unwrap();
                    (
                        if correct {
                            ACT_CLASS_CORRECT
                        } else {
                            ACT_CLASS_WRONG
                        },
                        0.0,
                        f(&i["margin"]),
                    )
                }
                "fixed_value" => (kind, f(&i["x_fixed"]), f(&i["margin"])),
                "relu_activation" => (kind, f(&i["x"]), 0.0),
                _ => (kind, f(&i["x"]), f(&i["margin"])),
            };
            let xn = match fam {
                "class_margin" => 0.0,
                "fixed_value" => x,
                _ => f(&o["x_new"]),
            };
            kinds.push(k);
            margins.push(m);
            xs.push(x);
            ys.push(f(&i["y"]));
            bs.push(f(&i["b"]));
            want.push((xn, f(&o["y_new"]), f(&o["b_new"])));
            labels.push(format!("{fam}: {label}"));
        }
    }
    assert_eq!(kinds.len(), 138);
    for (name, be) in backends() {
        let f32 = be.precision() == Precision::F32;
        let (mut x, mut y, mut b) = (xs.clone(), ys.clone(), bs.clone());
        be.project_activation(&kinds, &margins, &mut x, &mut y, &mut b)
            .unwrap();
        for i in 0..kinds.len() {
            // f32: skip inputs outside f32's range and exact ties made in f64.
            if f32
                && (labels[i].contains("tie")
                    || labels[i].contains("subnormal")
                    || ys[i].abs() > 1e30)
            {
                continue;
            }
            // f32: input rounding alone moves results by ~6e-8 of the inputs' magnitude.
            let mag = xs[i]
                .abs()
                .max(ys[i].abs())
                .max(bs[i].abs())
                .max(margins[i].abs())
                .max(1.0);
            let (rt, at) = if f32 {
                (1e-6, 1e-6 * mag)
            } else {
                (1e-15, 1e-300)
            };
            let w = want[i];
            assert_close(&format!("{name} {} x", labels[i]), &[x[i]], &[w.0], rt, at);
            assert_close(&format!("{name} {} y", labels[i]), &[y[i]], &[w.1], rt, at);
            assert_close(&format!("{name} {} b", labels[i]), &[b[i]], &[w.2], rt, at);
        }
    }
    // The scalar functions themselves, in f64, bit-for-bit where the reference's
    // operation order is the same.
    for i in 0..kinds.len() {
        let (x, y, b) = act::project(kinds[i], xs[i], ys[i], bs[i], margins[i]);
        assert_close(
            &labels[i],
            &[x, y, b],
            &[want[i].0, want[i].1, want[i].2],
            1e-15,
            0.0,
        );
    }
}

#[test]
fn golden_consensus() {
    let Some(g) = golden() else { return };
    for c in g["nmf_weight_consensus"].as_array().unwrap() {
        let reps: Vec<Vec<f64>> = c["inputs"]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(fv)
            .collect();
        let omega = f(&c["inputs"]["omega"]);
        let k = reps.len() as f64;
        let mut v: Vec<f64> = (0..reps[0].len())
            .map(|i| reps.iter().map(|r| r[i]).sum::<f64>() / k)
            .collect();
        normalize_group(&mut v, true, omega);
        let want = fv(&c["outputs"]["consensus"]);
        let label = c["label"].as_str().unwrap();
        assert_close(label, &v, &want, 1e-14, 0.0);
        // GPU: the same through reduce_rows partials and normalize_weights.
        for p in [Precision::F64, Precision::F32] {
            let Some(ctx) = gpu(p) else { continue };
            if p == Precision::F32 && reps.iter().flatten().any(|v| *v != 0.0 && v.abs() < 1e-30) {
                continue;
            }
            let e = v.len();
            // z as [E][K]
            let z: Vec<f64> = (0..e)
                .flat_map(|i| reps.iter().map(move |r| r[i]))
                .collect();
            let parts =
                gradfree::kernels::reduce_rows::gpu(&ctx, p, &z, &z, e, reps.len(), 0).unwrap();
            let ptr = [0u32, e as u32];
            let edges: Vec<u32> = (0..e as u32).collect();
            for wide in [false, true] {
                let got = gradfree::kernels::normalize_weights::gpu(
                    &ctx,
                    p,
                    &ptr,
                    &edges,
                    Sums::Partial(&parts, parts.len() / e),
                    reps.len(),
                    true,
                    omega,
                    e,
                    wide,
                )
                .unwrap();
                let (rt, at) = tol(p);
                assert_close(
                    &format!("gpu {p} {label} wide {wide}"),
                    &got,
                    &want,
                    rt,
                    at * omega,
                );
            }
        }
    }
    for c in g["nmf_code_consensus"].as_array().unwrap() {
        let reps = fv(&c["inputs"]["replicas"]);
        let mean = reps.iter().sum::<f64>() / reps.len() as f64;
        let got = mean.max(0.0);
        assert_eq!(got, f(&c["outputs"]["consensus"]), "{}", c["label"]);
    }
}
