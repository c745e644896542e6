//! RRR classifier: class selection (exemptions, relabeling) on hand-made
//! cases and across backends, training to zero error on a separable
//! problem, loaders that round-trip, and the majority generator.

use crate::support::*;
use gradfree::data::Limits;
use gradfree::data::labeled::{self, Labeled, LabeledFormat};
use gradfree::data::majority::Circuit;
use gradfree::kernels::class_select::{
    self, LABEL_EXEMPT, MODE_EXEMPT, MODE_NONE, MODE_RELABEL, MODE_RELABEL_FAKES, SelectInputs,
};
use gradfree::kernels::{rrr_forward, select_radix};
use gradfree::methods::rrr::Model;
use gradfree::methods::rrr::classify::{self, Classifier, Saved, Settings};
use gradfree::methods::rrr::net::Net;
use gradfree::problem::{NodeStart, RrrProblem, Selection, layered_edges};
use gradfree::train::{Session, Start};
use gradfree::{Backend, Error, Precision};
use std::path::Path;

/// Two class nodes (ids 0 and 1 of a 2-node "net"): per item (y−b) at each.
fn select(z: &[(f64, f64)], labels: &[u32], mode: u32, budget: usize) -> Vec<u32> {
    let kk = z.len();
    let mut y = vec![0.0; 2 * kk];
    for (k, &(a, b)) in z.iter().enumerate() {
        y[k] = a;
        y[kk + k] = b;
    }
    let b = vec![0.0; 2 * kk];
    let inp = SelectInputs {
        items: kk,
        first_class: 0,
        classes: 2,
        metric: &[1.0, 1.0],
        margin: 0.5,
        y: &y,
        b: &b,
        labels,
    };
    let mut want = vec![0; kk];
    class_select::reference(&inp, mode, budget, &mut want);
    let mut got = vec![0; kk];
    class_select::cpu(&inp, mode, budget, &mut got);
    assert_eq!(got, want, "cpu vs reference");
    want
}

#[test]
fn exemptions_take_the_largest_violations_and_never_satisfied_items() {
    // Label 0 needs z0 ≥ 0.5 and z1 ≤ 0. Distances²: item0 0, item1 (0.5)²/2,
    // item2 (0.3)²/2 + (0.2)²/2, item3 0, item4 (1.5)²/2.
    let z = [
        (0.9, -1.0),
        (0.0, 0.0),
        (0.2, 0.2),
        (2.0, -3.0),
        (-1.0, 0.0),
    ];
    let labels = [0, 0, 0, 0, 0];
    let x = LABEL_EXEMPT;
    assert_eq!(select(&z, &labels, MODE_EXEMPT, 1), vec![0, 0, 0, 0, x]);
    assert_eq!(select(&z, &labels, MODE_EXEMPT, 2), vec![0, x, 0, 0, x]);
    // Budget beyond the violators: only violators are exempted (the C
    // reference would exempt all five).
    assert_eq!(select(&z, &labels, MODE_EXEMPT, 4), vec![0, x, x, 0, x]);
    assert_eq!(select(&z, &labels, MODE_NONE, 4), labels.to_vec());
    // Ties go to the smaller index.
    let tie = [(0.0, 0.0), (0.0, 0.0), (1.0, -1.0)];
    assert_eq!(select(&tie, &[0, 0, 0], MODE_EXEMPT, 1), vec![x, 0, 0]);
}

#[test]
fn relabeling_takes_the_largest_positive_excess() {
    // Given label 0 everywhere. Item 0 fits label 1 perfectly (excess > 0),
    // item 1 fits label 0, item 2 fits label 1 a bit better, item 3 is
    // equally far from both (excess 0: never relabeled).
    let z = [(-1.0, 1.0), (1.0, -1.0), (0.1, 0.3), (0.0, 0.0)];
    let labels = [0, 0, 0, 0];
    assert_eq!(select(&z, &labels, MODE_RELABEL, 1), vec![1, 0, 0, 0]);
    assert_eq!(select(&z, &labels, MODE_RELABEL, 3), vec![1, 0, 1, 0]);
}

#[test]
fn false_positive_allowance_relabels_only_fakes() {
    // Items 0 and 2 are fakes (label 0) that fit label 1; item 1 is genuine
    // (label 1) but fits label 0 better and item 3 is a fake on its label.
    // Only fakes may be relabeled, largest excess first.
    let z = [(-1.0, 1.0), (1.0, -1.0), (0.1, 0.3), (1.0, -1.0)];
    let labels = [0, 1, 0, 0];
    assert_eq!(select(&z, &labels, MODE_RELABEL, 4), vec![1, 0, 1, 0]);
    assert_eq!(select(&z, &labels, MODE_RELABEL_FAKES, 4), vec![1, 1, 1, 0]);
    assert_eq!(select(&z, &labels, MODE_RELABEL_FAKES, 1), vec![1, 1, 0, 0]);
}

fn select_problem(mode: u32, budget: usize) -> RrrProblem {
    let mut p = RrrProblem::classifier(9, &layered_edges(&[4, 3, 2]), 4, 2, 2.0, 0.3, 1.0).unwrap();
    p.selection = match mode {
        MODE_EXEMPT => Selection::Exempt(budget),
        MODE_RELABEL => Selection::Relabel(budget),
        MODE_RELABEL_FAKES => Selection::RelabelFakes(budget),
        _ => Selection::None,
    };
    p
}

#[test]
fn class_selection_agrees_across_backends_and_chunks() {
    for (mode, budget) in [
        (MODE_EXEMPT, 3),
        (MODE_RELABEL, 4),
        (MODE_RELABEL_FAKES, 4),
        (MODE_EXEMPT, 0),
    ] {
        let p = select_problem(mode, budget);
        for kk in [1, 37, 128, 130] {
            let s = random_classifier_state(&p, kk, 5 + kk as u64);
            let run = |be: &Backend| {
                let mut e = be.rrr_engine(&p, kk).unwrap();
                e.load(&s).unwrap();
                let rep = e.iterate(3, 0.7, 0.0, 3).unwrap();
                let c = e.consensus().unwrap();
                (e.labels_used().unwrap(), e.state().unwrap(), rep.errors, c)
            };
            let (want_l, want_s, want_e, _) = run(&Backend::cpu(Precision::F64));
            if budget > 0 && kk > budget {
                let touched = want_l.iter().zip(&s.labels).filter(|(a, b)| a != b).count();
                assert!(touched <= budget, "mode {mode} K {kk}: {touched} > budget");
            }
            if let Some(ctx) = gpu(Precision::F64) {
                let (l, st, errs, _) = run(&Backend::gpu(ctx, Precision::F64));
                assert_eq!(l, want_l, "mode {mode} K {kk}: labels");
                assert_close("y", &st.y, &want_s.y, 1e-9, 1e-10);
                assert_close("b", &st.b, &want_s.b, 1e-9, 1e-10);
                assert_close("RRR_err", &errs, &want_e, 1e-9, 1e-10);
            }
        }
    }
}

#[test]
fn gpu_selection_ranks_across_item_chunks() {
    // Force several chunks: 9 nodes × 8 bytes × 64 items per binding. The
    // override is process-wide: this test runs in a process of its own. (The
    // CPU backend never reads it, so the CPU reference below is unaffected.)
    let name = "classify::gpu_selection_ranks_across_item_chunks";
    if !in_own_process(name, &[("GRADFREE_MAX_BINDING_BYTES", "4608")]) {
        return;
    }
    let Some(ctx) = gpu(Precision::F64) else {
        return;
    };
    let p = select_problem(MODE_EXEMPT, 5);
    let kk = 300;
    let s = random_classifier_state(&p, kk, 77);
    let run = |be: &Backend| {
        let mut e = be.rrr_engine(&p, kk).unwrap();
        e.load(&s).unwrap();
        e.iterate(2, 1.0, 0.0, 2).unwrap();
        e.consensus().unwrap();
        e.labels_used().unwrap()
    };
    let want = run(&Backend::cpu(Precision::F64));
    let got = run(&Backend::gpu(ctx, Precision::F64));
    assert_eq!(got, want);
    assert_eq!(got.iter().filter(|&&l| l == LABEL_EXEMPT).count(), 5);
}

#[test]
fn gpu_engine_submits_a_window_of_iterations_at_once() {
    // Submits are counted per process: this test runs in a process of its own.
    let name = "classify::gpu_engine_submits_a_window_of_iterations_at_once";
    if !in_own_process(name, &[]) {
        return;
    }
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let p = select_problem(MODE_EXEMPT, 3);
    let kk = 50;
    let s = random_classifier_state(&p, kk, 9);
    let mut e = Backend::gpu(ctx, Precision::F32)
        .rrr_engine(&p, kk)
        .unwrap();
    e.load(&s).unwrap();
    let before = gradfree::gpu::work_counts();
    let rep = e.iterate(200, 0.7, 0.0, 200).unwrap();
    let after = gradfree::gpu::work_counts();
    assert_eq!(rep.iterations, 200);
    assert_eq!(rep.errors.len(), 200);
    // One submit for the 200 iterations, one readback of their errors and
    // one of the counters.
    let submits = after.submits - before.submits;
    assert!(submits <= 3, "{submits} submits for 200 iterations");
    let per_iteration = (after.dispatches - before.dispatches) as f64 / 200.0;
    assert!(
        per_iteration < 30.0,
        "{per_iteration} dispatches per iteration"
    );
}

#[test]
fn gpu_profile_times_every_kernel_of_an_iteration() {
    // Profiling is per process and must be on before the device opens.
    let name = "classify::gpu_profile_times_every_kernel_of_an_iteration";
    if !in_own_process(name, &[]) {
        return;
    }
    gradfree::gpu::enable_profiling();
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    if !ctx.summary().timestamp_query {
        assert!(gradfree::gpu::kernel_times().is_err());
        return;
    }
    let p = select_problem(MODE_EXEMPT, 3);
    let kk = 40;
    let s = random_classifier_state(&p, kk, 4);
    let run = |be: &Backend| {
        let mut e = be.rrr_engine(&p, kk).unwrap();
        e.load(&s).unwrap();
        // Over 1024 dispatches in one window: the query set is read mid-recording.
        let rep = e.iterate(200, 0.7, 0.0, 200).unwrap();
        (e.state().unwrap(), rep.errors)
    };
    let (st, errs) = run(&Backend::gpu(ctx, Precision::F32));
    let times = gradfree::gpu::kernel_times().unwrap();
    // Either variant: 40 items run the quad kernels (labelled `…×4`).
    let of = |k: &str| {
        times
            .iter()
            .find(|t| t.kernel.trim_end_matches("×4") == k)
            .map(|t| (t.dispatches, t.seconds))
    };
    // The narrow step, or the cooperative one where GRADFREE_STEP asks.
    let (steps, step_s) = of("rrr_step::rrr_step")
        .or_else(|| of("rrr_step::rrr_step_wide"))
        .expect("rrr_step timed");
    assert_eq!(steps, 200);
    assert!(step_s > 0.0);
    for k in [
        "consensus_nodes::consensus_nodes",
        "select_radix::radix_hist",
    ] {
        assert!(of(k).is_some_and(|(n, _)| n >= 200), "{k}: {times:?}");
    }
    // Profiling changes when work is submitted, not what is computed (the
    // first iterations, before rounding differences grow).
    let (want_st, want_errs) = run(&Backend::cpu(Precision::F32));
    let (rt, at) = tol(Precision::F32);
    assert_close(
        "RRR_err",
        &errs[..10],
        &want_errs[..10],
        rt * 10.0,
        at * 10.0,
    );
    assert_eq!(st.items, want_st.items);
}

/// A batch start of random node values on `p`'s graph.
fn random_start(p: &RrrProblem, kk: usize, seed: u64) -> NodeStart {
    let mut r = rng(seed);
    let n = p.nodes;
    NodeStart {
        items: kk,
        x: uniform(&mut r, n * kk, -1.0, 1.0),
        y: uniform(&mut r, n * kk, -1.0, 1.0),
        weights: uniform(&mut r, p.edges(), -1.0, 1.0),
        biases: uniform(&mut r, n, -0.5, 0.5),
        data: uniform(&mut r, n * kk, 0.0, 1.0),
        labels: (0..kk as u32).map(|k| k % 2).collect(),
    }
}

/// `load_nodes` gives the state `load` of the host-built replicas gives.
fn check_load_nodes(kk: usize) {
    let p = select_problem(MODE_EXEMPT, 2);
    let start = random_start(&p, kk, 31 + kk as u64);
    let want = start.replicas(&p);
    assert_eq!(want.x[..kk], start.x[p.src[0] as usize * kk..][..kk]);
    for (name, be) in backends() {
        let mut e = be.rrr_engine(&p, kk).unwrap();
        e.load(&want).unwrap();
        let loaded = e.state().unwrap();
        e.load_nodes(&start).unwrap();
        let built = e.state().unwrap();
        assert_eq!(built, loaded, "{name} K {kk}");
        assert_eq!(e.labels_used().unwrap(), start.labels, "{name}");
        let rep_a = e.iterate(2, 0.7, 0.0, 2).unwrap();
        e.load(&want).unwrap();
        let rep_b = e.iterate(2, 0.7, 0.0, 2).unwrap();
        assert_eq!(
            rep_a.errors, rep_b.errors,
            "{name}: the same iterations follow"
        );
        let w = e.consensus_weights().unwrap();
        assert_eq!(w, e.consensus().unwrap().w, "{name}: consensus weights");
    }
}

#[test]
fn engines_build_replicas_from_the_node_form() {
    for kk in [1, 37, 128, 130] {
        check_load_nodes(kk);
    }
}

#[test]
fn gpu_builds_replicas_per_item_chunk() {
    // Several chunks: 9 nodes × 8 bytes × 64 items per binding (own process).
    let name = "classify::gpu_builds_replicas_per_item_chunk";
    if !in_own_process(name, &[("GRADFREE_MAX_BINDING_BYTES", "4608")]) {
        return;
    }
    check_load_nodes(300);
}

/// Keys with exact ties, zeros and negatives, values over forty decades,
/// and neighbours one ulp apart.
fn hard_keys(n: usize, seed: u64) -> Vec<f64> {
    use rand::Rng;
    let mut r = rng(seed);
    let pool: Vec<f64> = (0..12).map(|i| 0.37 * 3f64.powi(i)).collect();
    (0..n)
        .map(|k| match r.random_range(0..6) {
            0 => pool[r.random_range(0..pool.len())],
            1 => 0.0,
            2 => -r.random::<f64>(),
            3 => 10f64.powf(r.random_range(-20.0..20.0)),
            4 => f64::from_bits(0.75f64.to_bits() + (k % 3) as u64),
            _ => r.random::<f64>(),
        })
        .collect()
}

#[test]
fn gpu_threshold_selection_matches_ranking_with_ties_and_chunks() {
    for prec in [Precision::F32, Precision::F64] {
        let Some(ctx) = gpu(prec) else {
            continue;
        };
        for (n, seed) in [(1, 1), (300, 2), (5000, 3), (70_000, 4)] {
            let raw = hard_keys(n, seed);
            // The device holds keys in its precision; rank those values.
            let keys: Vec<f64> = match prec {
                Precision::F32 => raw.iter().map(|&k| k as f32 as f64).collect(),
                Precision::F64 => raw.clone(),
            };
            let labels: Vec<u32> = (0..n as u32).map(|k| k % 3).collect();
            let best: Vec<u32> = labels.iter().map(|l| (l + 1) % 3).collect();
            let positive = keys.iter().filter(|&&k| k > 0.0).count();
            for budget in [0, 1, 7, n / 2, positive, positive + 3] {
                for mode in [MODE_EXEMPT, MODE_RELABEL] {
                    let mut want = vec![0; n];
                    class_select::cpu_select(&keys, 0, &best, &labels, mode, budget, &mut want);
                    for chunk in [n, 97] {
                        let got = class_select::gpu_select(
                            &ctx, prec, &raw, &best, &labels, mode, budget, chunk,
                        )
                        .unwrap();
                        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                        assert_eq!(
                            diff, 0,
                            "{prec:?} n {n} budget {budget} mode {mode} chunk {chunk}"
                        );
                    }
                }
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn order_words_order_as_the_keys(a in 1e-30f64..1e30, b in 1e-30f64..1e30) {
        let (wa, wb) = (select_radix::order_words(a), select_radix::order_words(b));
        proptest::prop_assert_eq!(a.partial_cmp(&b), Some(wa.cmp(&wb)));
        let up = f64::from_bits(a.to_bits() + 1);
        proptest::prop_assert!(select_radix::order_words(up) > wa);
    }
}

/// Two Gaussian-free, well-separated blobs in 2-D (label = which side of a line).
fn separable(n: usize, seed: u64) -> Labeled {
    let mut r = rng(seed);
    let mut d = Labeled {
        dim: 2,
        classes: 2,
        ..Default::default()
    };
    while d.len() < n {
        let p = uniform(&mut r, 2, 0.0, 1.0);
        let side = p[0] - p[1];
        if side.abs() < 0.2 {
            continue;
        }
        d.x.extend(&p);
        d.y.push((side > 0.0) as u32);
    }
    d
}

fn settings(batch: usize, epochs: usize) -> Settings {
    Settings {
        batch,
        epochs,
        iters_per_batch: 60,
        tol: 0.0,
        beta: 1.0,
        omega: 2.0,
        upsilon: 1.0,
        margin: 0.1,
        exempt: 0,
        relabel: 0,
        false_positives: 0,
        seed: 3,
    }
}

#[test]
fn separable_problem_reaches_zero_training_error_on_both_backends() {
    let data = separable(64, 1);
    let s = settings(32, 15);
    let clf = Classifier::new(Net::layered(&[2, 6, 2]).unwrap(), &s).unwrap();
    for (_, be) in backends_of(&[Precision::F64, Precision::F32], &[Precision::F32]) {
        let mut session = Session::silent(&be).unwrap();
        let (m, history) = classify::train(
            &be,
            &mut session,
            &clf,
            &data,
            None,
            &s,
            clf.random_model(s.seed),
            Start::fresh(),
        )
        .unwrap();
        let errs: Vec<f64> = history.iter().map(|e| e.train_err).collect();
        assert_eq!(
            clf.error(&m, &data),
            0.0,
            "{}: train_err per epoch {errs:?}",
            be.describe()
        );
    }
}

#[test]
fn checkpoint_resume_retraces_the_uninterrupted_run() {
    let data = separable(48, 2);
    let s = settings(16, 4);
    let clf = Classifier::new(Net::layered(&[2, 4, 2]).unwrap(), &s).unwrap();
    let be = Backend::cpu(Precision::F64);
    let mut session = Session::silent(&be).unwrap();
    let (full, _) = classify::train(
        &be,
        &mut session,
        &clf,
        &data,
        None,
        &s,
        clf.random_model(s.seed),
        Start::fresh(),
    )
    .unwrap();
    let two = Settings {
        epochs: 2,
        ..s.clone()
    };
    let (m, history) = classify::train(
        &be,
        &mut session,
        &clf,
        &data,
        None,
        &two,
        clf.random_model(s.seed),
        Start::fresh(),
    )
    .unwrap();
    let saved = Saved {
        net: clf.net.clone(),
        settings: s.clone(),
        model: m,
        epoch: 2,
        history,
        provenance: Default::default(),
    }
    .to_bytes(&clf)
    .unwrap();
    let back = Saved::from_bytes(&saved, "checkpoint").unwrap();
    assert_eq!(back.epoch, 2);
    assert_eq!(back.net, clf.net);
    assert_eq!(back.settings, s);
    let start = Start {
        epoch: back.epoch,
        history: back.history,
    };
    let (resumed, _) =
        classify::train(&be, &mut session, &clf, &data, None, &s, back.model, start).unwrap();
    assert_eq!(
        resumed, full,
        "resumed model differs from the uninterrupted one"
    );
}

#[test]
fn net_files_round_trip() {
    let p = Path::new("net");
    let layered = Net::layered(&[3, 4, 2, 2]).unwrap();
    assert_eq!(Net::parse(&layered.to_text(), p).unwrap(), layered);
    // A DAG with skip edges whose hidden nodes are listed out of dependency order.
    let text = "2 2 2\n2 1 3\n3 2 0 1\n4 3 0 2 3\n5 2 1 2\n";
    let net = Net::parse(text, p).unwrap();
    assert_eq!(net.edges.len(), 8);
    assert_eq!(Net::parse(&net.to_text(), p).unwrap(), net);
    let order = net.topo_order().unwrap();
    let pos = |n: usize| order.iter().position(|&v| v == n).unwrap();
    assert!(pos(3) < pos(2));
}

#[test]
fn malformed_net_files_name_the_line() {
    let p = Path::new("bad.net");
    for (text, needle) in [
        ("2 1 2\n2 2 0 1\n3 1 2\n", "file ends"),
        ("2 1 2\n2 2 0 9\n3 1 2\n4 1 2\n", ":2:"),
        ("2 1 2\n3 2 0 1\n", ":2:"),
        ("2 2 2\n2 1 3\n3 1 2\n4 1 2\n5 1 3\n", "cycle"),
        ("2 1 2\n2 2 0 x\n", ":2:"),
        ("2 1 2\n2 1 0\n3 1 2\n4 1 2\n7\n", ":5:"),
    ] {
        let e = Net::parse(text, p).unwrap_err().to_string();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn data_files_round_trip_through_every_loader() {
    let d = separable(9, 4);
    let p = Path::new("d");
    let lim = Limits::for_precision(gradfree::Precision::F64);
    assert_eq!(labeled::parse_lwl(&d.to_lwl(), p, &lim).unwrap(), d);
    assert_eq!(
        labeled::parse_csv(&d.to_csv(), p, Some(2), &lim).unwrap(),
        d
    );
    // IDX: 3 images of 2×2 and their labels, raw and gzipped.
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2];
    img.extend([0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0]);
    let lab = vec![0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9];
    let dir = temp_dir("idx");
    let gz = |b: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&img)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&lab)).unwrap();
    let got = labeled::load(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        LabeledFormat::Auto,
        None,
        &lim,
    )
    .unwrap();
    assert_eq!(got.dim, 4);
    assert_eq!(got.y, vec![7, 0, 9]);
    assert_eq!(got.x[1], 1.0);
    assert!((got.x[2] - 0.2).abs() < 1e-15);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_data_files_name_the_line() {
    let p = Path::new("bad.dat");
    let lim = Limits::for_precision(gradfree::Precision::F64);
    for (text, needle) in [
        ("2 2\n0.1 0.2 1\n0.3 0.4\n", ":3:"),
        ("2 2\n0.1 NaN 1\n", ":2:"),
        ("2 2\n0.1 0.2 5\n", ":2:"),
        ("2 2\n0.1 0.2 1.5\n", ":2:"),
        ("2\n", "header"),
    ] {
        let e = labeled::parse_lwl(text, p, &lim).unwrap_err().to_string();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    let e = labeled::parse_csv("1,2,0\n1,2,3,1\n", p, None, &lim)
        .unwrap_err()
        .to_string();
    assert!(e.contains(":2:"), "{e}");
}

#[test]
fn majority_data_covers_every_vector_once_with_the_circuit_labels() {
    let c = Circuit::random(7, 3, 3, 7, 9).unwrap();
    let (a, b) = c.split(9);
    assert_eq!((a.len(), b.len()), (64, 64));
    let mut seen = std::collections::HashSet::new();
    for d in [&a, &b] {
        for k in 0..d.len() {
            let bits: Vec<bool> = d.item(k).iter().map(|&v| v == 1.0).collect();
            assert_eq!(d.y[k], c.eval(&bits) as u32);
            assert!(seen.insert(bits));
        }
    }
    let (a2, _) = Circuit::random(7, 3, 3, 7, 9).unwrap().split(9);
    assert_eq!(a2, a, "deterministic from the seed");
}

#[test]
fn layer_widths_recover_layered_nets_only() {
    for widths in [
        vec![4, 3],
        vec![784, 20, 10],
        vec![13, 26, 26, 2],
        vec![5, 1, 7, 3],
    ] {
        let net = Net::layered(&widths).unwrap();
        assert_eq!(net.layer_widths(), Some(widths));
    }
    // A skip connection (data → class) makes it some other graph.
    let mut net = Net::layered(&[3, 2, 2]).unwrap();
    net.edges.push((0, 3 + 2));
    net.edges.sort_by_key(|&(s, d)| (d, s));
    assert_eq!(net.layer_widths(), None);
}

#[test]
fn scores_are_the_class_outputs_and_rank_the_prediction() {
    let data = separable(40, 4);
    let s = settings(20, 2);
    let clf = Classifier::new(Net::layered(&[2, 5, 2]).unwrap(), &s).unwrap();
    let m = clf.random_model(9);
    for k in 0..data.len() {
        let scores = clf.scores(&m, data.item(k));
        let (x, _) = clf.forward(&m, data.item(k));
        assert_eq!(scores, x[clf.problem.first_class..].to_vec());
        let best = (scores[1] > scores[0]) as u32;
        assert_eq!(clf.classify(&m, data.item(k)), best);
    }
}

#[test]
fn a_set_stop_flag_ends_training_before_the_next_batch() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let data = separable(48, 5);
    let s = settings(16, 3);
    let clf = Classifier::new(Net::layered(&[2, 4, 2]).unwrap(), &s).unwrap();
    let be = Backend::cpu(Precision::F64);
    let flag = Arc::new(AtomicBool::new(false));
    let train = |session: &mut Session| {
        classify::train(
            &be,
            session,
            &clf,
            &data,
            None,
            &s,
            clf.random_model(s.seed),
            Start::fresh(),
        )
    };
    // Unset, the flag changes nothing; set, the loop stops with Interrupted.
    let mut session = Session::silent(&be).unwrap();
    let done = gradfree::train::with_stop_flag(flag.clone(), || train(&mut session));
    assert_eq!(done.unwrap().1.len(), 3);
    flag.store(true, Ordering::Relaxed);
    let mut session = Session::silent(&be).unwrap();
    let stopped = gradfree::train::with_stop_flag(flag.clone(), || train(&mut session));
    assert!(matches!(stopped, Err(gradfree::Error::Interrupted)));
    // The flag belongs to the thread that ran with it.
    let mut session = Session::silent(&be).unwrap();
    assert!(train(&mut session).is_ok());
}

#[test]
fn an_in_memory_session_keeps_what_a_directory_would_hold() {
    use gradfree::train::{OutMode, Voice};
    let be = Backend::cpu(Precision::F64);
    let run = classify::Run {
        net: Net::layered(&[2, 4, 2]).unwrap(),
        settings: settings(16, 2),
        train: separable(48, 6),
        test: None,
        image_shape: None,
        time_limit: None,
        resume: None,
    };
    let dir = temp_dir("in_memory_vs_dir");
    let mut on_disk = Session::new(&be, Some(&dir), OutMode::Overwrite, Voice::Silent).unwrap();
    classify::run(&be, &mut on_disk, &run).unwrap();
    let mut memory = Session::in_memory(&be, Voice::Silent).unwrap();
    classify::run(&be, &mut memory, &run).unwrap();
    let tensors = |b: &[u8]| gradfree::io::read_safetensors(b).unwrap().0;
    let disk_model = std::fs::read(dir.join("model.safetensors")).unwrap();
    let mem_model = memory.take_file("model.safetensors").unwrap();
    assert_eq!(tensors(&mem_model), tensors(&disk_model));
    assert!(
        memory.take_file("model.safetensors").is_none(),
        "taken once"
    );
    // One metrics line per epoch, as the directory's metrics.jsonl.
    let lines = |b: &[u8]| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
    let disk_metrics = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    let mem_metrics = memory.take_file("metrics.jsonl").unwrap();
    assert_eq!((lines(&mem_metrics), lines(&disk_metrics)), (2, 2));
    assert!(memory.take_file("checkpoint.safetensors").is_some());
    // A directory session holds nothing in memory.
    assert!(on_disk.take_file("model.safetensors").is_none());
}

/// A 5-6-4-3 classifier with a skip edge from an input to a class node, a
/// random model with biases, and 40 labelled items.
fn fed_case() -> (Classifier, Model, Labeled) {
    let s = settings(8, 1);
    let mut net = Net::layered(&[5, 6, 4, 3]).unwrap();
    net.edges.push((1, 16));
    net.edges.sort_by_key(|&(src, dst)| (dst, src));
    let clf = Classifier::new(net, &s).unwrap();
    let mut m = clf.random_model(5);
    let mut r = rng(6);
    let first = clf.net.data;
    let biases = uniform(&mut r, m.biases.len() - first, -0.3, 0.3);
    m.biases[first..].copy_from_slice(&biases);
    let n = 40;
    let data = Labeled {
        dim: 5,
        classes: 3,
        x: uniform(&mut r, n * 5, 0.0, 1.0),
        y: (0..n as u32).map(|k| (k * 7) % 3).collect(),
    };
    (clf, m, data)
}

/// A batch of `kk` kept items started by the device's feed pass is the
/// batch the host's feed pass starts, and the device's predicted classes
/// are the host's; the f64 twin is the host's pass.
fn check_device_feed(kk: usize) {
    check_device_feed_of(fed_case(), kk);
}

/// [`check_device_feed`] on a given classifier, model and item set.
fn check_device_feed_of((clf, m, data): (Classifier, Model, Labeled), kk: usize) {
    let rows: Vec<u32> = (0..kk).map(|k| ((k * 7 + 3) % data.len()) as u32).collect();
    let idx: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
    let host = clf.batch_start(&m, &data, &idx);
    let classes: Vec<u32> = idx
        .iter()
        .map(|&i| clf.classify(&m, data.item(i)))
        .collect();
    let twin = rrr_forward::reference(&clf.feed(), &m.weights, &m.biases, &data.x, &data.y, &rows);
    assert_eq!((&twin.x, &twin.y), (&host.x, &host.y), "the twin's pass");
    assert_eq!((&twin.data, &twin.labels), (&host.data, &host.labels));
    assert_eq!(twin.predicted, classes);
    for (name, be) in backends() {
        let mut e = be.rrr_engine(&clf.problem, kk).unwrap();
        let kept = e.keep_items(&clf.feed(), &data.x, &data.y).unwrap();
        if name.starts_with("cpu") {
            assert!(
                !kept && !e.feeds_on_device(),
                "{name}: the host pass is the CPU's"
            );
            continue;
        }
        assert!(kept, "{name}");
        e.load_nodes(&host).unwrap();
        let want = e.state().unwrap();
        e.load_fed(&m.weights, &m.biases, &rows).unwrap();
        let got = e.state().unwrap();
        let (rt, at) = tol(be.precision());
        for (what, g, w) in [
            ("x", &got.x, &want.x),
            ("w", &got.w, &want.w),
            ("y", &got.y, &want.y),
            ("b", &got.b, &want.b),
            ("data", &got.data, &want.data),
        ] {
            assert_close(&format!("{name} K {kk} {what}"), g, w, rt, at);
        }
        assert_eq!(got.labels, host.labels, "{name}");
        assert_eq!(e.labels_used().unwrap(), host.labels, "{name}");
        let predicted = e.predict_loaded(&m.weights, &m.biases).unwrap();
        for (k, (&p, &want)) in predicted.iter().zip(&classes).enumerate() {
            if p != want {
                // Only a near tie may go the other way in f32.
                let sc = clf.scores(&m, data.item(idx[k]));
                let gap = (sc[p as usize] - sc[want as usize]).abs();
                assert!(
                    gap < 1e-5,
                    "{name} item {k}: class {p} against {want}, scores {sc:?}"
                );
            }
        }
        assert_eq!(
            e.state().unwrap(),
            got,
            "{name}: prediction leaves the batch"
        );
        let rep = e.iterate(3, 0.8, 0.0, 3).unwrap();
        assert!(rep.errors.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn a_device_feed_pass_starts_the_batch_the_host_starts() {
    // 13 items run the kernel item by item, 16 by quads.
    for kk in [1, 13, 16] {
        check_device_feed(kk);
    }
}

/// A 300-240-10 net's feed pass walks 74,400 in-edges per item: past
/// llvmpipe's 65,535 loop iterations per invocation, so on lavapipe the
/// order is split over dispatches (before, the last nodes kept stale
/// values).
#[test]
fn a_device_feed_pass_holds_past_llvmpipes_loop_limit() {
    let s = settings(8, 1);
    let clf = Classifier::new(Net::layered(&[300, 240, 10]).unwrap(), &s).unwrap();
    let m = clf.random_model(7);
    let mut r = rng(8);
    let n = 12;
    let data = Labeled {
        dim: 300,
        classes: 10,
        x: uniform(&mut r, n * 300, 0.0, 1.0),
        y: (0..n as u32).map(|k| k % 10).collect(),
    };
    let feed = clf.feed();
    let whole = rrr_forward::order_parts(&feed, false);
    assert!(whole.len() == 1 && whole[0] == (0..250), "{whole:?}");
    let parts = rrr_forward::order_parts(&feed, true);
    assert!(
        parts.len() == 2 && parts[0].start == 0 && parts[1].end == 250,
        "{parts:?}"
    );
    for kk in [4, 5] {
        check_device_feed_of((clf.clone(), m.clone(), data.clone()), kk);
    }
    assert!(rrr_forward::fits_software_loop_limit(&feed));
}

/// Inputs that alone pass llvmpipe's loop limit (14,000 of them) leave no
/// split of the order that fits: a software adapter keeps no such set,
/// and its batches start from the host's feed pass instead of a device
/// pass that would stop short.
#[test]
fn a_software_adapter_keeps_no_set_past_its_loop_limit() {
    let dim = 14_000;
    let s = settings(8, 1);
    let clf = Classifier::new(Net::layered(&[dim, 2, 2]).unwrap(), &s).unwrap();
    let feed = clf.feed();
    assert!(!rrr_forward::fits_software_loop_limit(&feed));
    let n = 4;
    let x = uniform(&mut rng(3), n * dim, 0.0, 1.0);
    let y: Vec<u32> = (0..n as u32).map(|k| k % 2).collect();
    let Some(ctx) = gpu(Precision::F32) else {
        return;
    };
    let software = ctx.summary().software;
    let be = Backend::gpu(ctx, Precision::F32);
    let mut e = be.rrr_engine(&clf.problem, n).unwrap();
    assert_eq!(e.keep_items(&feed, &x, &y).unwrap(), !software);
}

#[test]
fn gpu_feeds_kept_items_per_item_chunk() {
    // Chunks of 32, 32, 32 and 6 items (the last by pairs): 67 edges ×
    // 8 bytes × 32 items per binding (own process).
    let name = "classify::gpu_feeds_kept_items_per_item_chunk";
    if !in_own_process(name, &[("GRADFREE_MAX_BINDING_BYTES", "17152")]) {
        return;
    }
    check_device_feed(102);
}

#[test]
fn kept_items_reject_what_does_not_fit() {
    let (clf, m, data) = fed_case();
    for (name, be) in backends_of(&[], &[Precision::F32]) {
        let mut e = be.rrr_engine(&clf.problem, 4).unwrap();
        let none = e.load_fed(&m.weights, &m.biases, &[0, 1, 2, 3]);
        assert!(
            matches!(none, Err(Error::Input(_))),
            "{name}: nothing kept yet"
        );
        assert!(e.predict_loaded(&m.weights, &m.biases).is_err());
        let short = e.keep_items(&clf.feed(), &data.x[1..], &data.y);
        assert!(matches!(short, Err(Error::Input(_))), "{name}: {short:?}");
        for order in [&[2u32, 5][..], &[99]] {
            // A data node, or no node at all, in the order.
            let bad = gradfree::kernels::rrr_forward::Feed {
                order,
                ..clf.feed()
            };
            let r = e.keep_items(&bad, &data.x, &data.y);
            assert!(matches!(r, Err(Error::Input(_))), "{name}: {order:?}");
        }
        assert!(e.keep_items(&clf.feed(), &data.x, &data.y).unwrap());
        let outside = e.load_fed(&m.weights, &m.biases, &[0, 1, 2, 40]);
        assert!(
            matches!(&outside, Err(Error::Input(t)) if t.contains("item 40")),
            "{name}: {outside:?}"
        );
        let three = e.load_fed(&m.weights, &m.biases, &[0, 1, 2]);
        assert!(matches!(three, Err(Error::Input(_))), "{name}");
        let model = e.predict_loaded(&m.weights[1..], &m.biases);
        assert!(matches!(model, Err(Error::Input(_))), "{name}");
    }
}

/// The device path reads a batch's classes back at the next batch's end
/// (or the epoch's): each batch is still counted once, with its own
/// classes, as the CPU engine counts it (f64, so the two runs' models agree
/// to rounding and classify the separable items alike).
#[test]
fn queued_device_classes_count_each_batch_as_the_host_does() {
    let name = "classify::queued_device_classes_count_each_batch_as_the_host_does";
    if !in_own_process(name, &[("GRADFREE_DEVICE_FEED", "1")]) {
        return;
    }
    // Every fifth label flipped: no batch is learnt without errors.
    let mut data = separable(64, 2);
    for y in data.y.iter_mut().step_by(5) {
        *y = 1 - *y;
    }
    // Four batches per epoch, one item of each exempted.
    let mut s = settings(16, 3);
    s.iters_per_batch = 5;
    s.exempt = 1;
    let clf = Classifier::new(Net::layered(&[2, 6, 2]).unwrap(), &s).unwrap();
    let mut runs = vec![];
    for (_, be) in backends_of(&[Precision::F64], &[Precision::F64]) {
        let mut training =
            classify::Training::new(&be, &clf, &data, None, &s, clf.random_model(s.seed)).unwrap();
        let mut session = Session::silent(&be).unwrap();
        let fin = gradfree::train::run(&mut session, &mut training, Start::fresh()).unwrap();
        // Every batch counted in its epoch: its exempted item too.
        for e in &fin.history {
            assert_eq!(e.exempted, 4, "{} epoch {}", be.describe(), e.epoch);
        }
        let errs: Vec<f64> = fin.history.iter().map(|e| e.batch_err).collect();
        assert!(errs.iter().all(|&e| e > 0.0), "{}: {errs:?}", be.describe());
        runs.push((be.describe(), training.starts_on_device(), errs));
    }
    let want = &runs[0].2;
    for (name, fed, got) in &runs[1..] {
        assert!(fed, "{name}: the device path");
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn training_from_device_feed_passes_reaches_zero_error() {
    // The device path on every adapter, lavapipe included (own process).
    let name = "classify::training_from_device_feed_passes_reaches_zero_error";
    if !in_own_process(name, &[("GRADFREE_DEVICE_FEED", "1")]) {
        return;
    }
    let data = separable(64, 1);
    let s = settings(32, 15);
    let clf = Classifier::new(Net::layered(&[2, 6, 2]).unwrap(), &s).unwrap();
    for (_, be) in backends_of(&[], &[Precision::F32, Precision::F64]) {
        let mut training =
            classify::Training::new(&be, &clf, &data, None, &s, clf.random_model(s.seed)).unwrap();
        assert!(training.starts_on_device(), "{}", be.describe());
        let mut session = Session::silent(&be).unwrap();
        let fin = gradfree::train::run(&mut session, &mut training, Start::fresh()).unwrap();
        let errs: Vec<f64> = fin.history.iter().map(|e| e.train_err).collect();
        assert_eq!(
            clf.error(&training.model, &data),
            0.0,
            "{}: train_err per epoch {errs:?}",
            be.describe()
        );
        let last = fin.history.last().unwrap();
        assert!(
            last.batch_err <= 0.1,
            "{}: batch_err {}",
            be.describe(),
            last.batch_err
        );
    }
}
