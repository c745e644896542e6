//! Whole RRR iterations: the CPU and GPU engines agree over several
//! iterations (f64 tightly, f32 loosely) on a classifier-shaped graph and on
//! NMF; LEDM m = 6 is solved from a fixed seed within a bounded number of
//! iterations on the CPU backend.

use crate::support::*;
use gradfree::engine::{IterReport, RrrEngine};
use gradfree::methods::rrr::nmf::{self, Nmf, SolveSettings};
use gradfree::problem::{RrrProblem, RrrState, layered_edges};
use gradfree::{Backend, Precision};

/// `kk` items: 13 runs the GPU kernels item by item, 16 by quads.
fn classifier(kk: usize) -> (RrrProblem, RrrState) {
    // 4 → 3 → 2 plus a skip edge from an input to a class node.
    let mut edges = layered_edges(&[4, 3, 2]);
    edges.push((0, 8));
    let p = RrrProblem::classifier(9, &edges, 4, 2, 2.0, 0.1, 1.0).unwrap();
    let s = random_classifier_state(&p, kk, 11);
    (p, s)
}

fn run_engine(be: &Backend, p: &RrrProblem, s: &RrrState, iters: usize) -> (RrrState, Vec<f64>) {
    let mut e = be.rrr_engine(p, s.items).unwrap();
    e.load(s).unwrap();
    let rep = e.iterate(iters, 0.8, 0.0, 4).unwrap();
    assert_eq!(rep.iterations, iters);
    assert_eq!(rep.errors.len(), iters);
    (e.state().unwrap(), rep.errors)
}

fn agree(p: &RrrProblem, s: &RrrState, iters: usize) {
    let (want, werr) = run_engine(&Backend::cpu(Precision::F64), p, s, iters);
    assert!(werr.iter().all(|e| e.is_finite()));
    for prec in [Precision::F64, Precision::F32] {
        let (rt, at) = match prec {
            Precision::F64 => (1e-9, 1e-10),
            Precision::F32 => (2e-3, 2e-4),
        };
        for (name, be) in backends_of(&[prec], &[prec]) {
            let (got, gerr) = run_engine(&be, p, s, iters);
            assert_close(&format!("{name} x"), &got.x, &want.x, rt, at);
            assert_close(&format!("{name} w"), &got.w, &want.w, rt, at);
            assert_close(&format!("{name} y"), &got.y, &want.y, rt, at);
            assert_close(&format!("{name} b"), &got.b, &want.b, rt, at);
            assert_close(&format!("{name} RRR_err"), &gerr, &werr, rt, at);
        }
    }
}

#[test]
fn classifier_iterations_agree_across_backends() {
    for kk in [13, 16] {
        let (p, s) = classifier(kk);
        agree(&p, &s, 6);
    }
}

#[test]
fn nmf_iterations_agree_across_backends() {
    // 6 items run the GPU kernels item by item, 8 by quads.
    for m in [6, 8] {
        let y = nmf::ledm(m);
        let n = Nmf::new(m - 1, m, 0.6).unwrap();
        let mut r = rng(3);
        let w = n.random_weights(&mut r);
        let x = n.encode(&w, &y).unwrap();
        agree(&n.problem, &n.state(&x, &w, &y), 10);
    }
}

#[test]
fn consensus_weights_have_norm_omega() {
    let y = nmf::ledm(6);
    let n = Nmf::new(5, 6, 0.6).unwrap();
    let mut r = rng(4);
    let w = n.random_weights(&mut r);
    let x = n.encode(&w, &y).unwrap();
    for (_, be) in backends_of(&[Precision::F64], &[Precision::F64]) {
        let mut e = be.rrr_engine(&n.problem, 6).unwrap();
        e.load(&n.state(&x, &w, &y)).unwrap();
        e.iterate(25, 0.3, 0.0, 8).unwrap();
        let c = e.consensus().unwrap();
        let (xc, wc) = n.factors(&c, 6);
        for i in 0..5 {
            let norm = wc.row(i).norm();
            assert!((norm - 0.6).abs() < 1e-12, "code {i}: norm {norm}");
        }
        assert!(xc.iter().chain(wc.iter()).all(|&v| v >= 0.0));
    }
}

#[test]
fn ledm6_is_solved_from_a_fixed_seed() {
    let y = nmf::ledm(6);
    let n = Nmf::new(5, 6, 0.6).unwrap();
    let s = SolveSettings {
        beta: 0.3,
        max_iter: 400_000,
        tol: 1e-8,
        check_every: 64,
        chunk: 400_000,
    };
    // Seed chosen once among the first few; the bound is ~3x its iteration count.
    let r = nmf::solve(&Backend::cpu(Precision::F64), &n, &y, 1, &s, |_| {}).unwrap();
    assert!(
        r.solved,
        "LEDM m=6 not solved: RRR_err {} after {} iterations",
        r.rrr_err, r.iterations
    );
    assert!(r.recon_err < 1e-6, "recon_err {}", r.recon_err);
    assert_eq!(r.degenerate, 0);
}

#[test]
fn batched_starts_reproduce_single_starts() {
    let y = nmf::ledm(6);
    let n = Nmf::new(5, 6, 0.6).unwrap();
    let s = SolveSettings {
        beta: 0.3,
        max_iter: 200_000,
        tol: 1e-8,
        check_every: 64,
        chunk: 200_000,
    };
    let seeds = [1u64, 2, 3];
    let cpu = Backend::cpu(Precision::F64);
    let batched = nmf::solve_batched(&cpu, 5, 0.6, &y, &seeds, &s, |_| {}).unwrap();
    for (b, &seed) in batched.iter().zip(&seeds) {
        let single = nmf::solve(&cpu, &n, &y, seed, &s, |_| {}).unwrap();
        // Each start's arithmetic is unchanged by batching: same trajectory.
        assert_eq!(b.solved, single.solved, "seed {seed}");
        assert_eq!(b.iterations, single.iterations, "seed {seed}");
        assert!(
            b.solved && b.recon_err < 1e-6,
            "seed {seed}: recon_err {}",
            b.recon_err
        );
    }
    // The GPU engine tracks each start's error separately too.
    if let Some(ctx) = gpu(Precision::F64) {
        let short = SolveSettings {
            max_iter: 300,
            tol: 1e-30,
            ..s
        };
        let g = nmf::solve_batched(
            &Backend::gpu(ctx, Precision::F64),
            5,
            0.6,
            &y,
            &seeds,
            &short,
            |_| {},
        )
        .unwrap();
        for (gr, &seed) in g.iter().zip(&seeds) {
            let c = nmf::solve(&cpu, &n, &y, seed, &short, |_| {}).unwrap();
            assert_eq!(gr.iterations, 300);
            assert_close(
                &format!("seed {seed} RRR_err series"),
                &gr.series,
                &c.series,
                1e-7,
                1e-12,
            );
        }
    }
}

/// The first check (every `c` iterations and the last of `iters`) by
/// which every group of `rep` (RRR_err itself with one group) has been
/// below `tol`.
fn first_stop(rep: &IterReport, tol: f64, c: usize, iters: usize) -> Option<usize> {
    let groups: Vec<&Vec<f64>> = if rep.group_errors.is_empty() {
        vec![&rep.errors]
    } else {
        rep.group_errors.iter().collect()
    };
    (1..=iters)
        .filter(|b| b % c == 0 || *b == iters)
        .find(|&b| groups.iter().all(|g| g[..b].iter().any(|&e| e < tol)))
}

/// A tolerance between two of `rep`'s errors (any group) a relative 1e-3
/// apart, about a third of the way down: no rounding decides a comparison.
fn tol_between(rep: &IterReport) -> f64 {
    let mut all: Vec<f64> = rep
        .errors
        .iter()
        .chain(rep.group_errors.iter().flatten())
        .copied()
        .collect();
    all.sort_by(|a, b| b.total_cmp(a));
    let i = (all.len() / 3..all.len() - 1)
        .find(|&i| all[i + 1] < all[i] * (1.0 - 1e-3))
        .expect("distinct errors");
    (all[i] * all[i + 1]).sqrt()
}

/// What a batch leaves for its model.
fn batch_outputs(e: &mut dyn RrrEngine) -> (RrrState, Vec<f64>, Vec<f64>, Vec<u32>) {
    let state = e.state().unwrap();
    let bias = e.bias_consensus().unwrap();
    let w = e.consensus_weights().unwrap();
    (state, bias, w, e.labels_used().unwrap())
}

/// On the GPU, a run with a tolerance stops at the first check where the
/// rule holds, though its windows run past checks: its errors, state,
/// bias consensus, weights and labels are those of a run of exactly that
/// many iterations; without a stop it runs them all.
fn check_device_stop(p: &RrrProblem, s: &RrrState, iters: usize) {
    for (name, be) in backends_of(&[], &[Precision::F32, Precision::F64]) {
        let mut e = be.rrr_engine(p, s.items).unwrap();
        e.load(s).unwrap();
        let free = e.iterate(iters, 0.8, 0.0, 7).unwrap();
        assert_eq!((free.iterations, free.converged), (iters, false), "{name}");
        let tol = tol_between(&free);
        for c in [1, 5, 7, 64] {
            let want = first_stop(&free, tol, c, iters).expect("a stop");
            e.load(s).unwrap();
            let rep = e.iterate(iters, 0.8, tol, c).unwrap();
            assert_eq!(
                (rep.iterations, rep.converged),
                (want, true),
                "{name} c {c}"
            );
            assert_eq!(rep.errors, free.errors[..want], "{name} c {c}");
            let stopped = batch_outputs(e.as_mut());
            e.load(s).unwrap();
            let exact = e.iterate(want, 0.8, 0.0, c).unwrap();
            assert_eq!(exact.degenerate, rep.degenerate, "{name} c {c}");
            assert_eq!(batch_outputs(e.as_mut()), stopped, "{name} c {c}");
        }
        e.load(s).unwrap();
        let never = e.iterate(iters, 0.8, 1e-30, 5).unwrap();
        assert_eq!(
            (never.iterations, never.converged),
            (iters, false),
            "{name}"
        );
        assert_eq!(never.errors, free.errors, "{name}");
    }
}

#[test]
fn gpu_stops_on_the_device_at_the_first_check_below_tol() {
    device_stops();
}

#[test]
fn gpu_stops_on_the_device_with_a_window_queued_after_the_check() {
    // The hardware policy on every adapter (own process): a window past
    // each check is submitted before the check is read.
    let name = "rrr_engine::gpu_stops_on_the_device_with_a_window_queued_after_the_check";
    if !in_own_process(name, &[("GRADFREE_RUN_AHEAD", "1")]) {
        return;
    }
    device_stops();
}

fn device_stops() {
    let (mut p, s) = classifier(16);
    p.selection = gradfree::problem::Selection::Exempt(2);
    check_device_stop(&p, &s, 150);
    // NMF with three error groups, item by item.
    let y = nmf::ledm(6);
    let mut n = Nmf::new(5, 6, 0.6).unwrap();
    n.problem.err_groups = 3;
    let mut r = rng(9);
    let w = n.random_weights(&mut r);
    let x = n.encode(&w, &y).unwrap();
    check_device_stop(&n.problem, &n.state(&x, &w, &y), 150);
}

/// A batch's end read back in one submit gives what the separate calls
/// give, to the bit, with exemptions in play.
#[test]
fn batch_end_reads_what_the_separate_calls_read() {
    let (mut p, s) = classifier(16);
    p.selection = gradfree::problem::Selection::Exempt(2);
    for (name, be) in backends_of(&[Precision::F64], &[Precision::F32, Precision::F64]) {
        let mut e = be.rrr_engine(&p, s.items).unwrap();
        e.load(&s).unwrap();
        e.iterate(20, 0.8, 0.0, 20).unwrap();
        let end = e.batch_end(true).unwrap();
        let bare = e.batch_end(false).unwrap();
        let want = (
            e.consensus_weights().unwrap(),
            e.bias_consensus().unwrap(),
            e.labels_used().unwrap(),
        );
        assert_eq!((end.weights, end.biases, end.labels), want, "{name}");
        assert!(bare.labels.is_empty(), "{name}");
        let exempt = gradfree::kernels::class_select::LABEL_EXEMPT;
        assert!(want.2.contains(&exempt), "{name}: no exemption to check");
    }
}

/// What the fused-iterations test compares: per precision, the classifier
/// runs' state and errors and the batched LEDM starts' factors and error
/// series, every value as its bits. The runs never stop, so the state
/// does not depend on the errors' rounding.
fn fused_outputs() -> Vec<(String, Vec<u64>)> {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let mut out = vec![];
    // maj13's network at its batch of 128, with a margin: on lavapipe its
    // windows are a few iterations (llvmpipe's loop limit).
    let edges = layered_edges(&[13, 26, 26, 2]);
    let wide = RrrProblem::classifier(67, &edges, 13, 2, 2.0, 0.1, 1.0).unwrap();
    let wide_state = random_classifier_state(&wide, 128, 5);
    for (name, be) in backends_of(&[], &[Precision::F32, Precision::F64]) {
        let mut nets = vec![];
        for kk in [13, 16] {
            nets.push((format!("classifier {kk}"), classifier(kk)));
        }
        nets.push(("maj13".to_string(), (wide.clone(), wide_state.clone())));
        for (net, (p, s)) in nets {
            let (st, err) = run_engine(&be, &p, &s, 40);
            for (what, v) in [
                ("x", &st.x),
                ("w", &st.w),
                ("y", &st.y),
                ("b", &st.b),
                ("RRR_err", &err),
            ] {
                out.push((format!("{name} {net} {what}"), bits(v)));
            }
        }
        let s = SolveSettings {
            beta: 0.3,
            max_iter: 300,
            tol: 1e-30,
            check_every: 64,
            chunk: 300,
        };
        let y = nmf::ledm(6);
        let runs = nmf::solve_batched(&be, 5, 0.6, &y, &[1, 2, 3], &s, |_| {}).unwrap();
        for r in runs {
            let seed = r.seed;
            out.push((format!("{name} LEDM {seed} x"), bits(r.x.as_slice())));
            out.push((format!("{name} LEDM {seed} w"), bits(r.w.as_slice())));
            out.push((format!("{name} LEDM {seed} series"), bits(&r.series)));
        }
    }
    out
}

#[test]
fn fused_iterations_give_the_separate_kernels_state() {
    // Child processes: the separate kernels (GRADFREE_FUSED=0) and the
    // fused kernel wherever it is allowed, with 8 and with 64 invocations
    // per block, each writing its outputs.
    let name = "rrr_engine::fused_iterations_give_the_separate_kernels_state";
    if let Ok(to) = std::env::var("GRADFREE_TEST_OUT") {
        std::fs::write(to, serde_json::to_string(&fused_outputs()).unwrap()).unwrap();
        return;
    }
    let mut got = vec![];
    for fused in ["0", "8", "64"] {
        let path = temp_path(&format!("fused-{fused}"));
        let to = path.to_string_lossy().to_string();
        let vars = [
            ("GRADFREE_FUSED", fused),
            ("GRADFREE_TEST_OUT", to.as_str()),
        ];
        if in_own_process(name, &vars) {
            unreachable!("the child writes its outputs above");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        got.push(serde_json::from_str::<Vec<(String, Vec<u64>)>>(&text).unwrap());
    }
    let separate = &got[0];
    for fused in &got[1..] {
        assert_eq!(fused.len(), separate.len());
        for ((what, got), (_, want)) in fused.iter().zip(separate) {
            if what.ends_with("series") || what.ends_with("RRR_err") {
                // The fused kernel sums the per-item errors item by item; the
                // separate reduction may take quads (LEDM's 36 errors of 6
                // items) or, on hardware, a tree. Both are the sum.
                let f = |v: &[u64]| v.iter().map(|&b| f64::from_bits(b)).collect::<Vec<f64>>();
                let rt = if what.contains("f32") { 2e-4 } else { 1e-9 };
                assert_close(what, &f(got), &f(want), rt, 1e-12);
            } else {
                assert!(got == want, "{what}: the fused kernel changed bits");
            }
        }
    }
}

/// The traffic model counts the consensus's reads only over the out-edges
/// of nodes it averages: data nodes take x from the data.
#[test]
fn traffic_model_counts_the_consensus_reads_it_makes() {
    use gradfree::engine::gpu::traffic_model;
    let edges = layered_edges(&[784, 20, 10]);
    let p = RrrProblem::classifier(814, &edges, 784, 10, 2.0, 0.1, 1.0).unwrap();
    // 200 of the 15,880 edges leave a hidden node.
    let share = 200.0 / 15_880.0;
    // The cooperative step reads xa once per (item, source): 804 sources.
    let xa = 804.0 / 15_880.0;
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(near(traffic_model(&p, true, false), 5.0 + xa + share));
    assert!(near(traffic_model(&p, true, true), 4.5 + xa + share));
    assert!(near(traffic_model(&p, false, false), 9.0 + share));
    assert!(near(traffic_model(&p, false, true), 8.5 + share));
    // 784-20-10 in f32 within the 20 bytes per (item, edge).
    assert!(traffic_model(&p, true, true) * 4.0 < 18.3);
    // An NMF network averages at every node: the model's most.
    let nmf = Nmf::new(5, 6, 0.6).unwrap();
    assert!(near(traffic_model(&nmf.problem, false, false), 10.0));
}

/// Where the step writes each quad's sum of the updated w and the weight
/// consensus reads those instead of w's rows (the hardware default, forced
/// here with the hardware's tree row sums), the GPU engine follows the CPU
/// engine with the cooperative step and with the narrow one, and a batch
/// loaded after iterations takes its consensus from its own w, not from
/// the last step's sums.
#[test]
fn quad_sums_of_w_feed_the_weight_consensus() {
    use gradfree::engine::gpu::{traffic_model, traffic_per_item_edge};
    let name = "rrr_engine::quad_sums_of_w_feed_the_weight_consensus";
    // As on a hardware GPU: the tree row sums past 256 items too.
    let vars = [("GRADFREE_QUAD_SUMS", "1"), ("GRADFREE_ROW_SUMS", "tree")];
    if !in_own_process(name, &vars) {
        return;
    }
    // 300 and 296 items: past the batches whose normalization sums w's
    // rows itself (296: 74 quad sums per row, summed in pairs); 2,052 and
    // 4,100: several parts of 1,024 items, from fewer parts of quad sums.
    let wide_edges = layered_edges(&[200, 10, 3]);
    let wide = RrrProblem::classifier(213, &wide_edges, 200, 3, 2.0, 0.1, 1.0).unwrap();
    let (narrow, _) = classifier(4);
    let cases = [
        ("wide", &wide, true, 300),
        ("wide", &wide, true, 2052),
        ("narrow", &narrow, false, 296),
        ("narrow", &narrow, false, 4100),
    ];
    for (net, p, cooperative, kk) in cases {
        assert_eq!(
            gradfree::kernels::rrr_step::wide(&p.bil, &p.in_ptr),
            cooperative
        );
        let (s, s2) = (
            random_classifier_state(p, kk, 7),
            random_classifier_state(p, kk, 8),
        );
        let run = |be: &Backend| {
            let mut e = be.rrr_engine(p, kk).unwrap();
            let model = traffic_per_item_edge();
            e.load(&s).unwrap();
            let rep = e.iterate(5, 0.8, 0.0, 5).unwrap();
            let mut out = vec![
                e.state().unwrap().w,
                rep.errors,
                e.consensus_weights().unwrap(),
            ];
            // A new batch: its consensus from its own w.
            e.load(&s2).unwrap();
            out.push(e.consensus_weights().unwrap());
            let rep = e.iterate(3, 0.8, 0.0, 3).unwrap();
            out.extend([rep.errors, e.consensus_weights().unwrap()]);
            (out, model)
        };
        let (want, _) = run(&Backend::cpu(Precision::F64));
        for prec in [Precision::F64, Precision::F32] {
            let (rt, at) = match prec {
                Precision::F64 => (1e-9, 1e-10),
                Precision::F32 => (2e-3, 2e-4),
            };
            for (name, be) in backends_of(&[], &[prec]) {
                let (got, model) = run(&be);
                let modelled = traffic_model(p, cooperative, true);
                assert!((model - modelled).abs() < 1e-12, "{name} {net}: {model}");
                let whats = ["w", "RRR_err", "consensus w", "loaded consensus w"];
                let whats = whats.iter().chain(&["RRR_err again", "consensus w again"]);
                for ((what, g), w) in whats.zip(&got).zip(&want) {
                    assert_close(&format!("{name} {net} K={kk} {what}"), g, w, rt, at);
                }
            }
        }
    }
}
