//! Shared helpers for the integration tests: the backends to test and their
//! tolerances, comparisons, seeded data, the `gradfree` binary, temporary
//! directories, and a process of its own for a test that needs one.
//!
//! Every module of the suite runs in this one process, on parallel threads.
//! Nothing here or in a test may change process-wide state (the
//! environment, the current directory, rayon's global pool): a test that
//! needs a process-wide setting asks for it with [`in_own_process`], and a
//! child process gets its environment through `Command::env`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use gradfree::gpu::{GpuContext, GpuRequest};
use gradfree::{Backend, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sizes every kernel is tested at: empty, one, odd, not a multiple of the
/// workgroup, and (separately, f32 only) more than 65535 workgroups.
pub const SIZES: &[usize] = &[0, 1, 37, 1003];

/// Invocations that need a 2-D grid (65535 workgroups of 64, plus some).
pub const BIG: usize = 65_535 * 64 + 101;

/// True when GRADFREE_SKIP_GPU_TESTS=1: GPU tests are skipped.
pub fn skip_gpu_tests() -> bool {
    std::env::var("GRADFREE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1")
}

/// The GPU context for a precision (lavapipe in CI), opened once per process.
/// With GRADFREE_SKIP_GPU_TESTS=1 GPU tests are skipped (they print why);
/// otherwise a missing adapter fails the test, and an adapter without f64
/// skips the f64 GPU tests.
pub fn gpu(precision: Precision) -> Option<Arc<GpuContext>> {
    static F32: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    static F64: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    let cell = match precision {
        Precision::F32 => &F32,
        Precision::F64 => &F64,
    };
    cell.get_or_init(|| {
        if skip_gpu_tests() {
            eprintln!("GPU tests skipped (GRADFREE_SKIP_GPU_TESTS=1)");
            return None;
        }
        let req = GpuRequest {
            allow_software: true,
            ..Default::default()
        };
        match GpuContext::open(&req, precision) {
            Ok(c) => Some(c),
            Err(gradfree::Error::NoF64 { adapter }) => {
                eprintln!("adapter {adapter} has no f64: f64 GPU tests skipped");
                None
            }
            Err(e) => panic!(
                "no GPU adapter for the GPU tests: {e} (set GRADFREE_SKIP_GPU_TESTS=1 to skip)"
            ),
        }
    })
    .clone()
}

/// The backends to test, named "cpu f64", "gpu f32", …: the CPU backend in
/// each of `cpu`'s precisions, then the GPU backend in each of `gpu`'s
/// precisions for which [`gpu`] opens a context. The order is as given: some
/// tests draw from one RNG across the loop over backends.
pub fn backends_of(cpu: &[Precision], gpu: &[Precision]) -> Vec<(String, Backend)> {
    let mut v: Vec<(String, Backend)> = cpu
        .iter()
        .map(|&p| (format!("cpu {p}"), Backend::cpu(p)))
        .collect();
    for &p in gpu {
        if let Some(ctx) = self::gpu(p) {
            v.push((format!("gpu {p}"), Backend::gpu(ctx, p)));
        }
    }
    v
}

/// Every backend: cpu f64, cpu f32, then gpu f32 and gpu f64 where they open.
pub fn backends() -> Vec<(String, Backend)> {
    backends_of(
        &[Precision::F64, Precision::F32],
        &[Precision::F32, Precision::F64],
    )
}

/// Per precision: (rtol, atol) for a GPU result against the f64 twin on
/// well-conditioned inputs of magnitude ~1.
pub fn tol(p: Precision) -> (f64, f64) {
    match p {
        Precision::F32 => (2e-4, 2e-5),
        Precision::F64 => (1e-11, 1e-12),
    }
}

/// Per precision: the one tolerance (relative and absolute) for a StarNet
/// kernel's result on any backend against its f64 twin; the tests scale it
/// for longer sums and whole trainings.
pub fn twin_tol(p: Precision) -> f64 {
    match p {
        Precision::F32 => 1e-4,
        Precision::F64 => 1e-11,
    }
}

/// Tolerance |got − want| ≤ rtol·max(|got|, |want|) + atol, per element;
/// a failure names the index and both values.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * g.abs().max(w.abs()) + atol;
        let d = (g - w).abs();
        assert!(
            d <= tol || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g:e}, want {w:e} (|diff| {d:e} > tol {tol:e})"
        );
    }
}

/// Seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [lo, hi).
pub fn uniform(r: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// A random RRR state for a classifier problem: x, w, y uniform in [−1, 1),
/// small biases, data in [0, 1), labels among 2 classes.
pub fn random_classifier_state(
    p: &gradfree::problem::RrrProblem,
    items: usize,
    seed: u64,
) -> gradfree::problem::RrrState {
    let mut r = rng(seed);
    let mut s = gradfree::problem::RrrState::zeros(p, items);
    s.x = uniform(&mut r, p.edges() * items, -1.0, 1.0);
    s.w = uniform(&mut r, p.edges() * items, -1.0, 1.0);
    s.y = uniform(&mut r, p.nodes * items, -1.0, 1.0);
    s.b = uniform(&mut r, p.nodes * items, -0.2, 0.2);
    s.data = uniform(&mut r, p.nodes * items, 0.0, 1.0);
    s.labels = (0..items).map(|_| r.random_range(0..2)).collect();
    s
}

/// A command for the gradfree binary. The environment is kept: CI pins the
/// lavapipe adapter with it.
pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gradfree"))
}

/// Runs the gradfree binary.
pub fn run_cli(args: &[&str]) -> Output {
    cli().args(args).output().expect("spawn gradfree")
}

/// stdout and stderr of a run, together.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh path for one test, `<tmp>/gradfree-<tag>-<pid>`, removed if it
/// exists and not created. All tests share one process id, so a tag may be
/// used only once per process: a second use panics instead of letting two
/// tests share (and delete) one directory.
pub fn temp_path(tag: &str) -> PathBuf {
    static TAGS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let fresh = TAGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(tag.to_string());
    assert!(fresh, "temporary directory tag {tag:?} used twice");
    let d = std::env::temp_dir().join(format!("gradfree-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A fresh, empty temporary directory for one test (see [`temp_path`]).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = temp_path(tag);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Marks the child process started by [`in_own_process`] (its value: the test).
const CHILD_TEST: &str = "GRADFREE_TEST_CHILD";

/// For a test that needs a process-wide setting the library reads from the
/// environment (GRADFREE_MAX_BINDING_BYTES): runs the test named `test` (its
/// path in this suite, `module::function`) alone in a child process of this
/// test binary, with `vars` added to the child's environment only, so the
/// setting never reaches the tests running beside it. Returns true in the
/// child, where the caller goes on to its body. In the parent it waits for the
/// child, fails if the child failed or did not run exactly that test, and
/// returns false: the caller returns at once.
pub fn in_own_process(test: &str, vars: &[(&str, &str)]) -> bool {
    if std::env::var(CHILD_TEST).as_deref() == Ok(test) {
        return true;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let o = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_TEST, test)
        .envs(vars.iter().copied())
        .output()
        .expect("spawn the test binary");
    let t = output_text(&o);
    assert!(
        o.status.success(),
        "{test} in its own process {vars:?}:\n{t}"
    );
    assert!(
        t.contains("test result: ok. 1 passed"),
        "{test} did not run in its own process (is the name right?):\n{t}"
    );
    false
}

/// Runs the gradfree binary, failing the test (after killing the child) if
/// it has not exited within `limit`: for a run that used to hang.
pub fn run_cli_within(args: &[&str], limit: std::time::Duration) -> Output {
    let mut cmd = cli();
    cmd.args(args);
    run_within(cmd, limit)
}

/// Runs `cmd`, failing the test (after killing the child) if it has not
/// exited within `limit`.
pub fn run_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    // Drain both pipes while waiting, so a chatty child cannot block on them.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = vec![];
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for gradfree") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `body` on a thread of its own and fails if it has not returned
/// within `limit` (the thread is left behind; the test fails at once).
pub fn within<R: Send + 'static>(
    limit: std::time::Duration,
    body: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        // The body panicked: rethrow its panic.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(h.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not return within {limit:?}")
        }
    }
}

/// The test binary's allocator: the system's, counting per thread the bytes
/// that thread holds, so a test can tell how much a call allocated at its
/// peak ([`peak_alloc`]). It changes no behaviour of the code under test.
struct CountingAlloc;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread.
    static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    /// The largest LIVE since the last reset.
    static PEAK: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count_alloc(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping touches only thread-local cells (const-initialized, without
// destructors, so they never allocate).
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() {
            count_alloc(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc_zeroed(l) };
        if !p.is_null() {
            count_alloc(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(p, l) };
        count_alloc(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let q = unsafe { std::alloc::System.realloc(p, l, new) };
        if !q.is_null() {
            count_alloc(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the most bytes it held allocated
/// at once on this thread (what it returns included).
pub fn peak_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(|p| p.get());
    (r, (peak - base).max(0) as usize)
}

/// A kernel and, where rows of `items` allow them, its pair and quad
/// variants: the GPU variants a kernel test checks.
pub fn item_variants(
    kernel: &'static gradfree::gpu::Kernel,
    pair: &'static gradfree::gpu::Kernel,
    quad: &'static gradfree::gpu::Kernel,
    items: usize,
) -> Vec<&'static gradfree::gpu::Kernel> {
    let mut out = vec![kernel];
    if items.is_multiple_of(2) {
        out.push(pair);
    }
    if items.is_multiple_of(4) {
        out.push(quad);
    }
    out
}
