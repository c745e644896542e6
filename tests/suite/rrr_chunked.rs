//! The GPU engine split into item chunks (forced by a tiny binding limit)
//! gives the same iterations as the CPU engine: the partial-sum seam
//! combines chunks exactly as one batch. Runs in a process of its own
//! because the override (GRADFREE_MAX_BINDING_BYTES) is process-wide.

use crate::support::*;
use gradfree::problem::{RrrProblem, layered_edges};
use gradfree::{Backend, Precision};

#[test]
fn chunked_gpu_engine_matches_cpu() {
    let name = "rrr_chunked::chunked_gpu_engine_matches_cpu";
    if !in_own_process(
        name,
        &[
            ("GRADFREE_MAX_BINDING_BYTES", "2048"),
            ("GRADFREE_QUAD_SUMS", "1"),
        ],
    ) {
        return;
    }
    let edges = layered_edges(&[5, 4, 2]);
    let p = RrrProblem::classifier(11, &edges, 5, 2, 2.0, 0.1, 1.0).unwrap();
    // 28 edges x 8 bytes = 224 bytes per item: 9 fit a chunk, whole quads
    // of them 8: seven chunks by quads, the last (5 or 6 items) item by
    // item or by pairs.
    for kk in [61, 62] {
        let s = random_classifier_state(&p, kk, 5);
        let run = |be: &Backend| {
            let mut e = be.rrr_engine(&p, kk).unwrap();
            e.load(&s).unwrap();
            let rep = e.iterate(5, 0.8, 0.0, 2).unwrap();
            (e.state().unwrap(), rep.errors, e.consensus().unwrap())
        };
        let (want, werr, wc) = run(&Backend::cpu(Precision::F64));
        let Some(ctx) = gpu(Precision::F64) else {
            return;
        };
        assert!(ctx.max_binding_bytes() == 2048);
        let (got, gerr, gc) = run(&Backend::gpu(ctx, Precision::F64));
        let (rt, at) = (1e-9, 1e-10);
        let what = |v: &str| format!("K={kk} {v}");
        assert_close(&what("x"), &got.x, &want.x, rt, at);
        assert_close(&what("w"), &got.w, &want.w, rt, at);
        assert_close(&what("y"), &got.y, &want.y, rt, at);
        assert_close(&what("b"), &got.b, &want.b, rt, at);
        assert_close(&what("RRR_err"), &gerr, &werr, rt, at);
        assert_close(&what("consensus w"), &gc.w, &wc.w, rt, at);
        assert_close(&what("consensus x"), &gc.x, &wc.x, rt, at);
    }
}
