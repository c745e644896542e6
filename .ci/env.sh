# Source me: installs the software Vulkan adapter (Mesa lavapipe) when it is
# missing and pins wgpu to it. Used by .ci/test.sh and by hand:
#   source .ci/env.sh && cargo test
lvp_icd() { ls /usr/share/vulkan/icd.d/lvp_icd.*.json 2>/dev/null | head -n 1; }
if [ -z "$(lvp_icd)" ]; then
  echo "installing the lavapipe software Vulkan adapter (mesa-vulkan-drivers libvulkan1)..." >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if [ -n "$(lvp_icd)" ]; then
  # Pin lavapipe: with every backend enabled and no Vulkan driver, wgpu falls back to GL silently.
  export VK_DRIVER_FILES="$(lvp_icd)"
  export VK_ICD_FILENAMES="$VK_DRIVER_FILES"
  export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
else
  echo "warning: no lavapipe ICD found; GPU tests will fail (set GRADFREE_SKIP_GPU_TESTS=1 to skip them)" >&2
fi
# Silence lavapipe's harmless XDG warning; keep Mesa's shader cache writable.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/gradfree-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export MESA_SHADER_CACHE_DIR="${MESA_SHADER_CACHE_DIR:-${TMPDIR:-/tmp}/gradfree-mesa-cache}"
