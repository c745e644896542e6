//! Benchmarks of the RRR projection kernels on both backends, and of a copy
//! kernel on the same adapter (the bandwidth roofline).
//!
//! `rrr_iteration/*`: one full RRR iteration (node consensus, weight
//! consensus, fused reflect–project–update step, error reduction) on a
//! 784→20→10 classifier graph — element-updates = |K|·|E| per iteration;
//! bytes = 10 elements moved per (k, e) (see `backend/gpu_rrr.rs`).
//! `project_bilinear/*`: the batched bilinear projection alone (problems of
//! 8 coordinates; includes upload and readback on the GPU).
//! `copy/*`: streaming copy, bytes read + written.
//!
//! `cargo bench --bench kernels` measures; `cargo test --benches` (CI) runs
//! each once. GRADFREE_BENCH_ITEMS sets |K| (default 1000; 64 in test mode).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradfree::backend::gpu_ops;
use gradfree::gpu::{GpuContext, GpuRequest};
use gradfree::kernels::project_bilinear::BilinearBatch;
use gradfree::rrr::{RrrProblem, RrrState, layered_edges};
use gradfree::{Backend, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn backends() -> Vec<(String, Backend)> {
    let mut v = vec![];
    for p in [Precision::F32, Precision::F64] {
        v.push((format!("cpu-{p}"), Backend::cpu(p)));
        let req = GpuRequest {
            allow_software: true,
            ..Default::default()
        };
        match GpuContext::open(&req, p) {
            Ok(ctx) => v.push((format!("gpu-{p}"), Backend::gpu(ctx, p))),
            Err(e) => eprintln!("gpu-{p}: not benchmarked ({e})"),
        }
    }
    v
}

fn test_mode() -> bool {
    // cargo test --benches runs the binary without --bench.
    !std::env::args().any(|a| a == "--bench")
}

fn classifier(items: usize) -> (RrrProblem, RrrState) {
    let p = RrrProblem::classifier(814, &layered_edges(&[784, 20, 10]), 784, 10, 2.0, 0.7, 1.0)
        .unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(1);
    let mut s = RrrState::zeros(&p, items);
    for v in [&mut s.x, &mut s.w, &mut s.y] {
        v.iter_mut().for_each(|x| *x = r.random_range(-1.0..1.0));
    }
    s.data
        .iter_mut()
        .for_each(|x| *x = r.random_range(0.0..1.0));
    s.labels.iter_mut().for_each(|l| *l = r.random_range(0..10));
    (p, s)
}

fn rrr_iteration(c: &mut Criterion) {
    let items = std::env::var("GRADFREE_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if test_mode() { 64 } else { 1000 });
    let (p, s) = classifier(items);
    let elems = (items * p.edges()) as u64;
    let mut g = c.benchmark_group("rrr_iteration");
    g.sample_size(10);
    for (name, be) in backends() {
        let mut e = be.rrr_engine(&p, items).unwrap();
        e.load(&s).unwrap();
        // ITERS iterations per sample so the GPU's one readback is amortized;
        // bytes are nominal: 10 elements per (k, e) per iteration (see gpu_rrr.rs).
        const ITERS: u64 = 4;
        g.throughput(Throughput::ElementsAndBytes {
            elements: ITERS * elems,
            bytes: ITERS * elems * 10 * be.precision().bytes() as u64,
        });
        g.bench_function(
            BenchmarkId::new(format!("784-20-10 K={items}"), &name),
            |b| b.iter(|| e.iterate(ITERS as usize, 0.9, 0.0, ITERS as usize).unwrap()),
        );
    }
    g.finish();
}

fn project_bilinear(c: &mut Criterion) {
    let problems = if test_mode() { 1000 } else { 65536 };
    let n = 8;
    let mut r = ChaCha8Rng::seed_from_u64(2);
    let mut batch = BilinearBatch {
        ptr: vec![0],
        ..Default::default()
    };
    for _ in 0..problems {
        for _ in 0..n {
            batch.x.push(r.random_range(-1.0..1.0));
            batch.w.push(r.random_range(-1.0..1.0));
        }
        batch.ptr.push(batch.x.len() as u32);
        batch.y.push(r.random_range(-1.0..1.0));
        batch.omega.push(1.5);
        batch.g.push(3.0);
    }
    let mut g = c.benchmark_group("project_bilinear");
    g.sample_size(10);
    for (name, be) in backends() {
        let eb = be.precision().bytes() as u64;
        g.throughput(Throughput::ElementsAndBytes {
            elements: (problems * n) as u64,
            bytes: (problems * n * 4) as u64 * eb,
        });
        g.bench_function(BenchmarkId::new(format!("{problems}x{n}"), &name), |b| {
            b.iter(|| be.project_bilinear(&batch).unwrap())
        });
    }
    g.finish();
}

fn copy(c: &mut Criterion) {
    let bytes: usize = if test_mode() { 1 << 20 } else { 64 << 20 };
    let mut g = c.benchmark_group("copy");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(2 * bytes as u64));
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    g.bench_function(
        BenchmarkId::new(format!("{} MiB", bytes >> 20), "cpu-memcpy"),
        |b| b.iter(|| dst.copy_from_slice(std::hint::black_box(&src))),
    );
    let req = GpuRequest {
        allow_software: true,
        ..Default::default()
    };
    if let Ok(ctx) = GpuContext::open(&req, Precision::F32) {
        let k = gpu_ops::PreparedCopy::new(&ctx, bytes).unwrap();
        g.throughput(Throughput::Bytes(2 * k.bytes as u64));
        g.bench_function(
            BenchmarkId::new(format!("{} MiB", bytes >> 20), "gpu"),
            |b| b.iter(|| k.run(1).unwrap()),
        );
    }
    g.finish();
}

criterion_group!(benches, rrr_iteration, project_bilinear, copy);
criterion_main!(benches);
