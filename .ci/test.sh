#!/usr/bin/env bash
# The project's test command (README): installs the software GPU adapter if
# missing, then lints and runs every test on both backends (CPU and wgpu on
# lavapipe), the kernel benchmarks once each in test mode included, the GPU
# tests again with the paths hardware adapters take, and the Python
# package's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=env.sh
source .ci/env.sh
# No incremental caches: CI builds once, and they roughly double target/ on a
# disk that has run out before.
export CARGO_INCREMENTAL=0
# Each step's seconds, so the next cut of CI's time starts from a measurement.
phase_start=$(date +%s)
phase() {
    local now
    now=$(date +%s)
    echo "ci phase: $1 took $((now - phase_start)) s" >&2
    phase_start=$now
}
cargo fmt --all --check
bash .ci/features.sh
phase fmt
cargo clippy --workspace --all-targets --locked -- -D warnings
phase clippy
cargo test --all-targets --locked
phase test
# The GPU paths hardware adapters take by default, on lavapipe: the tree row
# sums, the quad sums of w, the device feed pass, windows queued past a
# check, W*'s device form. Only the engines read these (the kernel tests
# name their variants, StarNet reads none).
GRADFREE_ROW_SUMS=tree GRADFREE_QUAD_SUMS=1 GRADFREE_DEVICE_FEED=1 GRADFREE_RUN_AHEAD=1 \
    GRADFREE_DEVICE_FORM=1 cargo test --locked --test suite -- \
    rrr_engine rrr_chunked classify nmf autoencode golden hsic
phase hardware-defaults
# The Python package's tests (scikit-learn estimators over the library).
bash .ci/python.sh
phase python
# Figures draw their text with the font built into the program: their tests
# run again with every font directory on the machine hidden (where user
# namespaces allow it).
if unshare -rm true 2>/dev/null; then
    unshare -rm sh -c 'for d in /usr/share/fonts /usr/local/share/fonts /etc/fonts; do
        if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi
    done
    exec cargo test --locked --test suite plots'
else
    echo "unshare unavailable: the figure tests ran once, with the machine's fonts present"
fi
phase fonts
# Data-parallel runs over MPI: the `mpi` feature's lints and its tests
# (they start `mpirun -np 2` and `-np 3 --oversubscribe` themselves).
# shellcheck source=mpi.sh
source .ci/mpi.sh
phase mpi-install
# The whole workspace, as the first lint: the dependencies' check builds are
# then the same (workspace features unify), so only MPI's own code is new.
cargo clippy --workspace --all-targets --locked --features gradfree/mpi -- -D warnings
phase mpi-clippy
cargo test --locked --features mpi --test suite mpi::
phase mpi-test
