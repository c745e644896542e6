#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh runs and packs it for a GPU machine
# that has no Rust toolchain or no network (a cloud image with a driver and
# little else):
#
#   scripts/gpu-pack.sh [DIR]        (default .gpu-pack, which git ignores)
#
# DIR then holds bin.tar.xz (stripped release builds of gradfree, the test
# suite, the examples psi_product and phi_form and the kernels bench),
# pack.env (the commit, the build's source directory, the toolchain), the
# Vulkan loader's Debian packages (libvulkan1, and libglvnd0 for drivers that
# dispatch through it) where apt can download them, and the golden RRR
# vectors where ../shared/golden has them. Copy DIR and the checkout to the
# GPU machine (x86-64 Linux, glibc at least this machine's) and run
# `scripts/gpu-check.sh OUT --prebuilt DIR` there.
set -euo pipefail

cd "$(dirname "$0")/.."
pack=${1:-.gpu-pack}
log() { echo "gpu-pack: $*" >&2; }

# The executable of target NAME in a build's JSON messages (stdin).
executable() {
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1"
}

log "building (release)"
cargo build --release --locked --bin gradfree --example psi_product --example phi_form
suite=$(cargo test --release --locked --test suite --no-run --message-format=json | executable suite)
kernels=$(cargo bench --locked --bench kernels --no-run --message-format=json | executable kernels)

rm -rf "$pack"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$pack" "$stage/target/release/examples" "$stage/target/release/pack"
cp target/release/gradfree "$stage/target/release/"
cp target/release/examples/psi_product target/release/examples/phi_form "$stage/target/release/examples/"
cp "$suite" "$stage/target/release/pack/suite"
cp "$kernels" "$stage/target/release/pack/kernels"
# Line tables make these 6× larger; the GPU machine's copy limits are tight.
strip "$stage"/target/release/gradfree "$stage"/target/release/examples/* "$stage"/target/release/pack/*
tar -C "$stage" -cJf "$pack/bin.tar.xz" target

{
    echo "PACK_COMMIT=$(git rev-parse HEAD)"
    echo "PACK_DIRTY=$([[ -z $(git status --porcelain --untracked-files=no) ]] && echo no || echo yes)"
    # The tests find fixtures and the gradfree binary under the directory
    # they were built in; gpu-check links it to the checkout where it runs.
    echo "PACK_SOURCE_DIR=$PWD"
    echo "PACK_RUSTC=\"$(rustc --version)\""
    echo "PACK_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$pack/pack.env"

if command -v apt-get >/dev/null; then
    (cd "$pack" && apt-get download libvulkan1 libglvnd0 >/dev/null 2>&1) ||
        log "apt could not download libvulkan1 and libglvnd0: the GPU machine needs its own Vulkan loader"
fi
if [[ -f ../shared/golden/rrr_golden.json ]]; then
    cp ../shared/golden/rrr_golden.json "$pack/"
fi
log "$(du -sh "$pack" | cut -f1) in $pack: $(ls "$pack" | tr '\n' ' ')"
