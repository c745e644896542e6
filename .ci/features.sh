#!/usr/bin/env bash
# Checks that the library `cargo test` builds is the one the Python bindings
# link: every crate both builds share must have the same features in each
# (the test build with gradfree's dev-dependencies, the bindings with pyo3
# and numpy). Where they differ, `maturin develop` compiles that crate and
# everything above it again (wgpu and naga included: about 2 minutes of CI).
# The fix is a pin in Cargo.toml's dev- or build-dependencies, or in
# python/Cargo.toml, as the ones there.
set -euo pipefail
cd "$(dirname "$0")/.."
# This machine's crates only (the Windows-only ones never build here).
target=$(rustc -vV | sed -n 's/^host: //p')
tree() {
    cargo tree --locked -p "$1" -e "$2" --target "$target" --prefix none -f '{p} {f}' | sort -u
}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
tree gradfree normal,build,dev > "$dir/tests"
tree gradfree-python normal,build > "$dir/bindings"
python3 - "$dir/tests" "$dir/bindings" <<'EOF'
import sys

def features(path):
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 2:
            continue
        feats = parts[2] if len(parts) > 2 and not parts[2].startswith("(") else ""
        out.setdefault(" ".join(parts[:2]), set()).update(f for f in feats.split(",") if f)
    return out

tests, bindings = features(sys.argv[1]), features(sys.argv[2])
differ = [
    f"  {name}: tests {sorted(tests[name])}, bindings {sorted(bindings[name])}"
    for name in sorted(tests.keys() & bindings.keys())
    if tests[name] != bindings[name]
]
if differ:
    print("the test build and the Python bindings build these crates with different features:")
    print("\n".join(differ))
    sys.exit(1)
print(f"features agree on the {len(tests.keys() & bindings.keys())} crates both builds share")
EOF
