#!/usr/bin/env bash
# One-shot check of a machine with a GPU: builds gradfree, lists the
# adapters, runs the paper bench suite on the GPU and on the CPU (f32, and
# f64 on the GPU where the adapter has SHADER_F64), the RRR, StarNet and HSIC
# workloads again with device time per kernel (--profile), the HSIC kernel
# product and one W* Φ build alone at n = 10,000 (examples/psi_product,
# examples/phi_form), one RRR iteration of 784-20-10 at |K| = 65,536
# against a copy kernel (benches/kernels.rs), and writes one report,
# OUT/report.md and OUT/report.json, with every figure and the commands that
# made it. Energy comes from NVML where the NVIDIA driver provides it (so
# GWMs per joule are measured), else the report says why it is missing.
#
#   scripts/gpu-check.sh [OUT] [--mnist FILE] [--allow-software] [--budget SECONDS] [--quick]
#                        [--prebuilt DIR]
#
# It first runs the GPU tests of the suite on the adapter (OUT/tests.log).
# Without --allow-software it refuses to bench a software adapter (lavapipe
# would take half an hour): it exists to measure real hardware. --quick runs
# the quick suite instead of the paper's, and the products at n = 2,000
# (a check of the script itself). --prebuilt DIR takes the programs from a
# pack made by scripts/gpu-pack.sh instead of building them, for machines
# without Rust or a network; it brings its own Vulkan loader where the
# machine has none.
set -euo pipefail

out=gpu-check
mnist=""
allow_software=0
budget=540
suite=paper
big=10000
prebuilt=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mnist) mnist="$2"; shift 2 ;;
        --allow-software) allow_software=1; shift ;;
        --budget) budget="$2"; shift 2 ;;
        --quick) suite=quick; big=2000; shift ;;
        --prebuilt) prebuilt="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
        *) out="$1"; shift ;;
    esac
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
log() { echo "gpu-check: $*" >&2; }
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }

if [[ -n "$prebuilt" ]]; then
    prebuilt=$(cd "$prebuilt" && pwd)
    [[ -f "$prebuilt/bin.tar.xz" && -f "$prebuilt/pack.env" ]] ||
        { log "$prebuilt is not a pack of scripts/gpu-pack.sh (no bin.tar.xz or pack.env)"; exit 2; }
elif ! command -v cargo >/dev/null; then
    log "no cargo: install Rust (https://rustup.rs) and rerun, or make a pack with scripts/gpu-pack.sh"
    log "  on a machine that has it and rerun with --prebuilt PACK"
    exit 2
fi

# One report from whatever ran (OUT/report.md and OUT/report.json); also
# written when the check stops early, with the reason and the driver's state.
write_report() {
    python3 - "$out" "$(cut -c1-12 "$out/commit" 2>/dev/null || echo unknown)" <<'PY'
import json, os, sys, datetime
out, rev = sys.argv[1], sys.argv[2]
report = {"git": rev, "date": datetime.datetime.utcnow().isoformat() + "Z", "runs": {}}
md = [f"# gpu-check {report['date']} (gradfree {rev})", ""]
devices_file = os.path.join(out, "devices.txt")
devices = open(devices_file).read() if os.path.exists(devices_file) else "(not listed)\n"
report["devices"] = devices
md += ["## Devices", "", "```", devices.strip(), "```", ""]
stopped = os.path.join(out, "stopped")
if os.path.exists(stopped):
    report["stopped"] = open(stopped).read().strip()
    md += ["## Stopped early", "", report["stopped"], ""]
driver = os.path.join(out, "driver.txt")
if os.path.exists(driver):
    report["driver"] = open(driver).read()
    md += ["## Driver", "", "```", report["driver"].strip(), "```", ""]
smi = os.path.join(out, "nvidia-smi.csv")
if os.path.exists(smi):
    report["nvidia_smi"] = open(smi).read()
    md += ["```", report["nvidia_smi"].strip(), "```", ""]
for name in ["tests", "gpu-f32", "profile", "step-narrow", "quad-sums-off", "fused-off", "fused-on", "form-host", "gpu-f64", "kernel-product", "phi-form", "rrr-roofline"]:
    st = os.path.join(out, name + ".status")
    if not os.path.exists(st):
        continue
    status = open(st).read().strip()
    cmd_file = os.path.join(out, name + ".command")
    cmd = open(cmd_file).read().strip() if os.path.exists(cmd_file) else ""
    run = {"status": status, "command": cmd}
    md += [f"## {name}: {status}", "", f"`{cmd}`", ""]
    bj = os.path.join(out, name, "bench.json")
    if os.path.exists(bj):
        run["bench"] = json.load(open(bj))
        md += [open(os.path.join(out, name, "bench.md")).read(), ""]
    else:
        logf = os.path.join(out, name + ".log")
        if os.path.exists(logf):
            md += ["```", open(logf).read()[-3000:], "```", ""]
    report["runs"][name] = run
json.dump(report, open(os.path.join(out, "report.json"), "w"), indent=2)
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")
print(os.path.join(out, "report.md"))
PY
}
# Stops with a report: the reason (also logged), then exit status $1.
stop() { # status, reason...
    local status="$1"; shift
    log "$*"
    echo "$*" >"$out/stopped"
    write_report >/dev/null
    exit "$status"
}

# The commit measured, for the report.
if [[ -n "$prebuilt" ]]; then
    # shellcheck disable=SC1091
    source "$prebuilt/pack.env"
    echo "$PACK_COMMIT" >"$out/commit"
else
    git rev-parse HEAD >"$out/commit" 2>/dev/null || echo unknown >"$out/commit"
fi

# A Debian package's files under a directory: dpkg-deb, or Python where the
# machine has no dpkg (a .deb is an ar archive holding data.tar.*).
unpack_deb() { # deb, dir
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$1" "$2"
        return
    fi
    python3 - "$1" "$2" <<'DEB'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
raw = open(deb, "rb").read()
assert raw[:8] == b"!<arch>\n", f"{deb}: not an ar archive"
at = 8
while at + 60 <= len(raw):
    name = raw[at:at + 16].decode().strip().rstrip("/")
    size = int(raw[at + 48:at + 58].decode().strip())
    body = raw[at + 60:at + 60 + size]
    if name.startswith("data.tar"):
        tar = tarfile.open(fileobj=io.BytesIO(body))
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    at += 60 + size + (size & 1)
DEB
}

# The pack's Vulkan loader where the machine has none (unpacked aside, not
# into /).
if [[ -n "$prebuilt" ]] && ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    debs=("$prebuilt"/*.deb)
    if [[ -e "${debs[0]}" ]]; then
        loader=$(mktemp -d)
        for deb in "${debs[@]}"; do unpack_deb "$deb" "$loader"; done
        export LD_LIBRARY_PATH="$loader/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        log "Vulkan loader from the pack: $(ls "$prebuilt"/*.deb | xargs -n1 basename | tr '\n' ' ')"
    fi
fi

# A library by its name: the loader's cache, then the directories drivers
# are mounted in (containers mount NVIDIA's under /usr/local/nvidia).
lib_dirs=(/usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib)
find_lib() { # name: its path, or nothing
    local path d
    path=$(ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n { print $NF; exit }' || true)
    if [[ -z $path ]]; then
        for d in "${lib_dirs[@]}"; do
            if [[ -e $d/$1 ]]; then path=$d/$1; break; fi
        done
    fi
    echo "$path"
}

# A Vulkan ICD (a JSON manifest naming the driver's library) is what wgpu
# needs on Linux. The loader reads /etc, /usr/local/share and /usr/share;
# container images may hold NVIDIA's under /usr/local/nvidia, or the
# driver's library (libGLX_nvidia.so.0) with no manifest at all: then one is
# written into OUT.
icds=$(ls /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json 2>/dev/null || true)
nvidia_glx=$(find_lib libGLX_nvidia.so.0)
nvidia_icd=0
if [[ -n $icds ]] && grep -qs nvidia $icds; then nvidia_icd=1; fi
if [[ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]] && (( ! nvidia_icd )); then
    added=$(ls /usr/local/nvidia/share/vulkan/icd.d/*.json /usr/local/nvidia/etc/vulkan/icd.d/*.json 2>/dev/null || true)
    if [[ -z $added && -n $nvidia_glx ]]; then
        added="$(cd "$out" && pwd)/nvidia_icd.json"
        printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' \
            "$nvidia_glx" >"$added"
        log "NVIDIA's driver library without a Vulkan manifest: wrote $added"
    fi
    if [[ -n $added ]]; then
        VK_DRIVER_FILES=$(printf '%s\n' $added $icds | paste -sd:)
        export VK_DRIVER_FILES VK_ICD_FILENAMES="$VK_DRIVER_FILES"
        # The manifests may name their library without a path.
        for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
            if [[ -d $d ]]; then export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"; fi
        done
        icds=$(printf '%s\n' $added $icds)
        log "Vulkan drivers: $VK_DRIVER_FILES"
    fi
fi

# The driver's state, for the report whatever happens next.
{
    echo "NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES:-(unset)}"
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-(unset)}"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-(unset)}"
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L 2>&1 || true; else echo "no nvidia-smi"; fi
    echo "Vulkan manifests:"
    vk_files=${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}
    for icd in $icds ${vk_files//:/ }; do
        lib=$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$icd" 2>/dev/null | head -1 || true)
        found=""
        if [[ $lib == /* ]]; then
            if [[ -e $lib ]]; then found=$lib; fi
        elif [[ -n $lib ]]; then
            found=$(find_lib "$lib")
        fi
        echo "  $icd: ${lib:-no library_path} (${found:+found at }${found:-not found})"
    done | sort -u
    echo "driver libraries:"
    for d in "${lib_dirs[@]}"; do
        ls "$d"/libvulkan.so* "$d"/libGLX_nvidia.so* "$d"/libnvidia-glcore.so* "$d"/libnvidia-glvkspirv.so* \
            "$d"/libcuda.so* "$d"/libnvidia-ml.so* 2>/dev/null || true
    done | sed 's/^/  /'
} >"$out/driver.txt" 2>&1

if [[ -z "$icds" && -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]]; then
    stop 2 "no Vulkan driver (ICD) is installed (see $out/driver.txt):
  NVIDIA: the driver's Vulkan part (Debian/Ubuntu: libnvidia-gl-<version> or nvidia-driver; it installs nvidia_icd.json);
    in a container, the NVIDIA runtime mounts it only with the graphics capability (NVIDIA_DRIVER_CAPABILITIES=all, or compute,utility,graphics)
  AMD or Intel: mesa-vulkan-drivers (radv, anv)
  then check with: vulkaninfo --summary (package vulkan-tools)"
fi

bin=target/release/gradfree
tests_built=0
if [[ -n "$prebuilt" ]]; then
    log "unpacking $prebuilt"
    tar -xJf "$prebuilt/bin.tar.xz"
    # The tests open fixtures and the gradfree binary under the directory
    # they were built in: that path, linked to this checkout.
    if [[ "$PACK_SOURCE_DIR" != "$PWD" ]]; then
        if [[ ! -e "$PACK_SOURCE_DIR" ]] && mkdir -p "$(dirname "$PACK_SOURCE_DIR")" 2>/dev/null &&
            ln -s "$PWD" "$PACK_SOURCE_DIR" 2>/dev/null; then
            log "linked $PACK_SOURCE_DIR to this checkout for the tests"
        elif [[ "$(cd "$PACK_SOURCE_DIR" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]]; then
            log "warning: the tests look for their files in $PACK_SOURCE_DIR, which is not this checkout"
        fi
    fi
    if [[ -f "$prebuilt/rrr_golden.json" && -z "${GRADFREE_GOLDEN:-}" ]]; then
        export GRADFREE_GOLDEN="$prebuilt/rrr_golden.json"
    fi
    suite_cmd=(target/release/pack/suite)
    kernels_cmd=(target/release/pack/kernels --bench)
    tests_built=1
else
    log "building (release)"
    cargo build --release --locked 2>"$out/build.log" || stop 1 "build failed: see $out/build.log"
    # The test suite too, for the GPU tests below (no tests if it fails).
    cargo test --release --locked --test suite --no-run 2>>"$out/build.log" && tests_built=1
    suite_cmd=(cargo test --release --locked --test suite --)
    kernels_cmd=(cargo bench --locked --bench kernels --)
fi
# The examples, built here unless the pack has them.
example() { # name: builds it if needed; false if it cannot
    [[ -n "$prebuilt" ]] || cargo build --release --locked --example "$1" 2>>"$out/build.log"
}

"$bin" devices >"$out/devices.txt" 2>&1 || true
cat "$out/devices.txt" >&2
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv >"$out/nvidia-smi.csv" 2>&1 || true
fi
if ! grep -E '^gpu [0-9]+:' "$out/devices.txt" | grep -vq 'software adapter'; then
    if [[ $allow_software -eq 0 ]]; then
        stop 2 "no hardware adapter is visible (see $out/devices.txt and $out/driver.txt); rerun with --allow-software to bench a software one anyway"
    fi
fi

mnist_args=()
if [[ -n "$mnist" ]]; then
    mnist_args=(--mnist "$mnist")
fi

# The GPU tests on this adapter first (kernel twins, golden vectors, the
# engines against the CPU engine, each hardware default the engines take):
# lavapipe runs them in CI; a real GPU has not.
test_filters="rrr_ golden project_bilinear hsic starnet layers classify shaders_validate"
if (( tests_built )) && (( $(left) > 240 )); then
    limit=$(( $(left) / 4 ))
    log "GPU tests (at most ${limit}s)"
    echo "${suite_cmd[*]} $test_filters" >"$out/tests.command"
    # shellcheck disable=SC2086
    if timeout "$limit" "${suite_cmd[@]}" $test_filters >"$out/tests.full.log" 2>&1; then
        echo ok >"$out/tests.status"
    else
        echo "failed or timed out (exit $?)" >"$out/tests.status"
    fi
    grep -E '^test .*(FAILED|ignored)|^test result|panicked|^---- ' "$out/tests.full.log" >"$out/tests.log" || true
    # A count too, for a run stopped at its limit.
    echo "$(grep -c ' ok$' "$out/tests.full.log") of $(grep -oE '^running [0-9]+' "$out/tests.full.log" |
        grep -oE '[0-9]+' | head -1) tests passed, $(grep -c ' FAILED$' "$out/tests.full.log") failed" >>"$out/tests.log"
fi

run_bench() { # name, timeout, args...
    local name="$1" limit="$2"; shift 2
    if (( limit < 30 )); then
        log "skipping $name: the time budget is spent"
        echo "skipped (time budget)" >"$out/$name.status"
        return 0
    fi
    local env="${GRADFREE_STEP:+GRADFREE_STEP=$GRADFREE_STEP }${GRADFREE_FUSED:+GRADFREE_FUSED=$GRADFREE_FUSED }${GRADFREE_DEVICE_FORM:+GRADFREE_DEVICE_FORM=$GRADFREE_DEVICE_FORM }${GRADFREE_QUAD_SUMS:+GRADFREE_QUAD_SUMS=$GRADFREE_QUAD_SUMS }"
    log "bench $name (at most ${limit}s): $env$bin bench $*"
    echo "$env$bin bench $*" >"$out/$name.command"
    if timeout "$limit" "$bin" bench "$@" --out "$out/$name" --quiet >"$out/$name.log" 2>&1; then
        echo ok >"$out/$name.status"
    else
        echo "failed or timed out (exit $?)" >"$out/$name.status"
    fi
}

run_bench gpu-f32 $(( $(left) / 2 )) --suite "$suite" --devices gpu,cpu --precision f32 "${mnist_args[@]}"
# Device time per kernel (timestamp queries; each dispatch alone, so these
# rows' speed is not the run's).
run_bench profile $(( $(left) / 2 )) --suite "$suite" --devices gpu --precision f32 --profile \
    --only rrr-nmf-ledm6,rrr-classify-maj13,rrr-classify-784-20-10,starnet-epoch,hsic-ism "${mnist_args[@]}"
# The classifier with the one-invocation-per-(node, item) step instead of
# the cooperative one the engine runs for wide nodes (784-20-10): the
# measurement that decides the default on hardware.
GRADFREE_STEP=narrow run_bench step-narrow $(( $(left) / 4 )) --suite "$suite" --devices gpu \
    --precision f32 --only rrr-classify-784-20-10 "${mnist_args[@]}"
# The weight consensus from w's rows instead of the step's quad sums of w
# (the hardware default past 256 items: 18.25 against 20.25 modelled bytes
# per (item, edge) for 784-20-10), against gpu-f32's row.
GRADFREE_QUAD_SUMS=0 run_bench quad-sums-off $(( $(left) / 5 )) --suite "$suite" --devices gpu \
    --precision f32 --only rrr-classify-784-20-10 "${mnist_args[@]}"
# Small problems run whole windows of iterations in one dispatch
# (rrr_fused): LEDM with the separate kernels instead, and maj13 (136,448
# item-edges, above the default size) fused, decide the threshold.
GRADFREE_FUSED=0 run_bench fused-off $(( $(left) / 6 )) --suite "$suite" --devices gpu \
    --precision f32 --only rrr-nmf-ledm6,rrr-classify-maj13
GRADFREE_FUSED=1 run_bench fused-on $(( $(left) / 5 )) --suite "$suite" --devices gpu \
    --precision f32 --only rrr-nmf-ledm6,rrr-classify-maj13
# W*'s Φ formed on the host from the product read back (n × (r + 1) per
# ISM iteration) instead of on the device (r × r): against gpu-f32's
# hsic-ism row, the measurement behind the hardware default.
GRADFREE_DEVICE_FORM=0 run_bench form-host $(( $(left) / 6 )) --suite "$suite" --devices gpu \
    --precision f32 --only hsic-ism
if grep -E '^gpu [0-9]+:' -A2 "$out/devices.txt" | grep -q 'f64 yes'; then
    run_bench gpu-f64 $(( $(left) - 20 )) --suite "$suite" --devices gpu --precision f64 \
        --only rrr-nmf-ledm6,rrr-classify-maj13,hsic-ws,hsic-ism
fi

# The HSIC kernel product alone at n = $big (the W* Ψ product: Ψ·[Z, 1],
# a LOBPCG block, and a thin one), GPU then CPU, f32.
if (( $(left) > 60 )) && example psi_product; then
    log "kernel products at n = $big"
    echo "target/release/examples/psi_product $big Q W 3 [gpu]" >"$out/kernel-product.command"
    for shape in "20 401" "48 50" "20 11"; do
        for dev in gpu cpu; do
            arg=$([[ $dev == gpu ]] && echo gpu || true)
            echo "$dev: $(timeout 120 target/release/examples/psi_product $big $shape 3 $arg 2>&1 | tail -1)"
        done
    done >"$out/kernel-product.log"
    echo ok >"$out/kernel-product.status"
fi
# One W* Φ build at n = $big (q = 47, r = 400): formed on the device
# (r × r back), from the product read back (n × (r + 1)), and on the CPU.
if (( $(left) > 60 )) && example phi_form; then
    log "Φ builds at n = $big"
    echo "GRADFREE_DEVICE_FORM=1|0 target/release/examples/phi_form $big 47 400 3 [gpu]" >"$out/phi-form.command"
    {
        echo "gpu, device form: $(GRADFREE_DEVICE_FORM=1 timeout 120 target/release/examples/phi_form $big 47 400 3 gpu 2>&1 | tail -1)"
        echo "gpu, host form: $(GRADFREE_DEVICE_FORM=0 timeout 120 target/release/examples/phi_form $big 47 400 3 gpu 2>&1 | tail -1)"
        echo "cpu: $(timeout 120 target/release/examples/phi_form $big 47 400 3 2>&1 | tail -1)"
    } >"$out/phi-form.log"
    echo ok >"$out/phi-form.status"
fi

# One RRR iteration of 784-20-10 at |K| = 65,536 against a copy kernel on
# the same adapter (criterion): the iteration's modelled GB/s as a share
# of the copy's, the issue's bandwidth target on hardware.
if (( $(left) > 120 )); then
    items=$([[ $suite == quick ]] && echo 1024 || echo 65536)
    log "RRR iteration at |K| = $items and the copy roofline"
    echo "GRADFREE_BENCH_ITEMS=$items GRADFREE_BENCH_BACKENDS=gpu-f32 ${kernels_cmd[*]} 'rrr_iteration|copy'" >"$out/rrr-roofline.command"
    if GRADFREE_BENCH_ITEMS=$items GRADFREE_BENCH_BACKENDS=gpu-f32 timeout $(( $(left) - 20 )) \
        "${kernels_cmd[@]}" 'rrr_iteration|copy' >"$out/rrr-roofline.full.log" 2>&1; then
        echo ok >"$out/rrr-roofline.status"
    else
        echo "failed or timed out (exit $?)" >"$out/rrr-roofline.status"
    fi
    grep -E '^(rrr_iteration|copy)/|time:|thrpt:' "$out/rrr-roofline.full.log" >"$out/rrr-roofline.log" || true
    # The same iteration with the weight consensus from w's rows (its
    # modelled bytes are 2 B more per (item, edge)): the quad sums' gain.
    if (( $(left) > 60 )); then
        {
            echo "GRADFREE_QUAD_SUMS=0:"
            GRADFREE_QUAD_SUMS=0 GRADFREE_BENCH_ITEMS=$items GRADFREE_BENCH_BACKENDS=gpu-f32 timeout $(( $(left) - 20 )) \
                "${kernels_cmd[@]}" 'rrr_iteration' 2>&1 | grep -E '^rrr_iteration/|time:|thrpt:'
        } >>"$out/rrr-roofline.log" || true
    fi
fi

write_report
log "done in $(( $(date +%s) - start ))s: $out/report.md and $out/report.json"
