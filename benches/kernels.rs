//! Benchmarks of the RRR projection kernels on both backends, and of a copy
//! kernel on the same adapter (the bandwidth roofline).
//!
//! `rrr_iteration/*`: one full RRR iteration (node consensus, weight
//! consensus, fused reflect–project–update step, error reduction) on a
//! 784→20→10 classifier graph — element-updates = |K|·|E| per iteration;
//! bytes = the modelled elements moved per (k, e) (the GPU engine's
//! `engine::gpu::traffic_model`, 8 on the CPU).
//! `project_bilinear/*`: the batched bilinear projection alone (problems of
//! 8 coordinates; includes upload and readback on the GPU).
//! `copy/*`: streaming copy, bytes read + written.
//! `backend_kernels/*`: dense, normal_eq, leaky_relu, row_residual,
//! gauss_kernel, kernel_product and the conv_unpool operators per backend.
//!
//! `cargo bench --bench kernels` measures; `cargo test --benches` (CI) runs
//! each once. GRADFREE_BENCH_ITEMS sets |K| (default 1000; 64 in test
//! mode), GRADFREE_BENCH_BACKENDS the backends (e.g. `gpu-f32`).
//! `scripts/gpu-check.sh` runs the iteration at |K| = 65,536 and the copy
//! on the GPU: the iteration's GB/s against the copy's.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradfree::gpu::{GpuContext, GpuRequest};
use gradfree::kernels::project_bilinear::BilinearBatch;
use gradfree::problem::{RrrProblem, RrrState, layered_edges};
use gradfree::{Backend, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The backends to measure: all, or those GRADFREE_BENCH_BACKENDS names
/// (comma-separated, e.g. `gpu-f32`), so that a large |K| allocates no
/// engine on the others.
fn backends() -> Vec<(String, Backend)> {
    let only = std::env::var("GRADFREE_BENCH_BACKENDS").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    let mut v = vec![];
    for p in [Precision::F32, Precision::F64] {
        if wanted(&format!("cpu-{p}")) {
            v.push((format!("cpu-{p}"), Backend::cpu(p)));
        }
        if !wanted(&format!("gpu-{p}")) {
            continue;
        }
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
        // bytes are modelled: the GPU engine's traffic per (k, e) and
        // iteration (`engine::gpu::traffic_model`), 8 elements on the CPU.
        const ITERS: u64 = 4;
        let per_item_edge = match be.kind() {
            gradfree::engine::DeviceKind::Gpu => gradfree::engine::gpu::traffic_per_item_edge(),
            gradfree::engine::DeviceKind::Cpu => 8.0,
        };
        g.throughput(Throughput::ElementsAndBytes {
            elements: ITERS * elems,
            bytes: (ITERS as f64 * elems as f64 * per_item_edge) as u64
                * be.precision().bytes() as u64,
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
        let k = gradfree::kernels::copy::PreparedCopy::new(&ctx, bytes).unwrap();
        g.throughput(Throughput::Bytes(2 * k.bytes as u64));
        g.bench_function(
            BenchmarkId::new(format!("{} MiB", bytes >> 20), "gpu"),
            |b| b.iter(|| k.run(1).unwrap()),
        );
    }
    g.finish();
}

/// The dense-algebra kernels behind StarNet, HSIC and the SGD baseline,
/// through the backend on every device: dense (act(AB + c)), normal_eq,
/// leaky_relu, row_residual, gauss_kernel, kernel_product (Γ-free Gaussian
/// product), and the three conv_unpool operators. Throughput elements are
/// multiply-adds (or elements for the element-wise kernels).
fn backend_kernels(c: &mut Criterion) {
    use gradfree::kernels::conv_unpool::ConvShape;
    use gradfree::kernels::dense::Act;
    use gradfree::kernels::kernel_product::Spec;
    let small = test_mode();
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let mut uni = |n: usize| -> Vec<f64> { (0..n).map(|_| r.random_range(-1.0..1.0)).collect() };
    let (n, k, m) = if small {
        (64, 32, 16)
    } else {
        (4096, 256, 128)
    };
    let (a, b, bias) = (uni(n * k), uni(k * m), uni(m));
    let (kn, kd, kr) = if small { (64, 8, 4) } else { (2000, 32, 33) };
    let (rows, km) = (uni(kn * kd), uni(kn * kr));
    let sh = ConvShape {
        c_in: 2,
        c_out: 1,
        k: 5,
        u: 2,
        side: 7,
    };
    let items = if small { 4 } else { 1000 };
    let kernels = uni(sh.conv_channels() * sh.patch());
    let cbias = uni(sh.conv_channels());
    let (h, z) = (uni(items * sh.d_in()), uni(items * sh.d_out()));
    let conv_madds = (items * sh.d_out() * sh.patch() / (sh.u * sh.u)) as u64;
    let mut g = c.benchmark_group("backend_kernels");
    g.sample_size(10);
    for (name, be) in backends() {
        let mut one = |label: String, elems: u64, f: &mut dyn FnMut()| {
            g.throughput(Throughput::Elements(elems));
            g.bench_function(BenchmarkId::new(label, &name), |bch| bch.iter(&mut *f));
        };
        one(
            format!("dense {n}x{k}x{m}"),
            (n * k * m) as u64,
            &mut || {
                be.dense(&a, k, &b, m, &bias, Act::Leaky(0.0)).unwrap();
            },
        );
        one(
            format!("normal_eq {n}x({k}+1)"),
            (n * (k + 1) * (k + 1 + m)) as u64,
            &mut || {
                be.normal_eq(&a, k, &a[..n * m], m).unwrap();
            },
        );
        one(format!("leaky_relu {}", n * k), (n * k) as u64, &mut || {
            be.leaky_relu(&a, 0.5, false).unwrap();
        });
        one(format!("row_residual {n}x{k}"), (n * k) as u64, &mut || {
            be.row_residual(&a, &a, k).unwrap();
        });
        one(
            format!("gauss_kernel {kn}x{kn}x{kd}"),
            (kn * kn * kd) as u64,
            &mut || {
                be.gauss_kernel(&rows, &rows, kd, 1.0, true).unwrap();
            },
        );
        one(
            format!("kernel_product {kn}x{kn}x{kr}"),
            (kn * kn * (kd + kr)) as u64,
            &mut || {
                be.kernel_product(&rows, &rows, kd, &km, kr, &Spec::gauss(1.0))
                    .unwrap();
            },
        );
        one(
            format!("conv_forward 2x7x7->28x28 K={items}"),
            conv_madds,
            &mut || {
                be.conv_forward(&sh, &kernels, &cbias, &h, Act::Identity)
                    .unwrap();
            },
        );
        one(format!("conv_transpose K={items}"), conv_madds, &mut || {
            be.conv_transpose(&sh, &kernels, &z).unwrap();
        });
        one(
            format!("conv_normal_eq K={items}"),
            conv_madds * sh.patch() as u64,
            &mut || {
                be.conv_normal_eq(&sh, &h, &z).unwrap();
            },
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    rrr_iteration,
    project_bilinear,
    copy,
    backend_kernels
);
criterion_main!(benches);
