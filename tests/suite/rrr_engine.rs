//! Whole RRR iterations: the CPU and GPU engines agree over several
//! iterations (f64 tightly, f32 loosely) on a classifier-shaped graph and on
//! NMF; LEDM m = 6 is solved from a fixed seed within a bounded number of
//! iterations on the CPU backend.

use crate::support::*;
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
