//! Allreduce latency and bandwidth through gradfree's MPI collective, the
//! inputs of the communication model in docs/scaling.md. Run it under
//! mpirun with the `mpi` feature:
//!
//! ```sh
//! cargo build --release --features mpi --bench allreduce
//! mpirun -np 2 target/release/deps/allreduce-* --bench
//! ```
//!
//! Prints, per message size, the median seconds of one sum-allreduce of
//! f32 values over all ranks (rank 0 prints).

#[cfg(feature = "mpi")]
fn main() {
    use std::time::Instant;
    let world = gradfree::engine::mpi::MpiWorld::init().expect("MPI initialized once");
    let c: std::sync::Arc<dyn gradfree::engine::Collective> = world.collective();
    if c.rank() == 0 {
        println!(
            "ranks {}: f32 values, median µs per allreduce, GB/s (bytes sent per rank / time)",
            c.world()
        );
    }
    for p in [0u32, 4, 8, 10, 12, 14, 16, 18, 20, 22] {
        let n = 1usize << p;
        let mut buf = vec![1.0f32; n];
        let reps = (1usize << 24 >> p).clamp(5, 2000);
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps + 3 {
            let t = Instant::now();
            c.allreduce_sum_f32(&mut buf).expect("allreduce");
            times.push(t.elapsed().as_secs_f64());
            buf.fill(1.0);
        }
        times.drain(..3);
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        if c.rank() == 0 {
            println!(
                "{:>9} values ({:>9} B): {:>10.2} µs  {:>6.2} GB/s",
                n,
                n * 4,
                med * 1e6,
                (n * 4) as f64 / med / 1e9
            );
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn main() {
    eprintln!("allreduce: build with --features mpi and run under mpirun (see its doc)");
}
