#!/usr/bin/env bash
# The project's test command (README): installs the software GPU adapter if
# missing, then lints and runs every test on both backends (CPU and wgpu on
# lavapipe), the kernel benchmarks once each in test mode included.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=env.sh
source .ci/env.sh
# No incremental caches: CI builds once, and they roughly double target/ on a
# disk that has run out before.
export CARGO_INCREMENTAL=0
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
