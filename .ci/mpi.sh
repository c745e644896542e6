# Source me: installs Open MPI (and the libclang the `mpi` crate's bindgen
# needs) when missing, and sets what mpirun needs on these machines. Used by
# .ci/test.sh for the `--features mpi` build and tests.
need=""
command -v mpirun >/dev/null 2>&1 || need="$need openmpi-bin"
[ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || need="$need libopenmpi-dev"
ls /usr/lib/x86_64-linux-gnu/libclang-*.so* >/dev/null 2>&1 || ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need="$need libclang1-14"
[ -d /usr/lib/llvm-14/lib/clang ] || need="$need libclang-common-14-dev"
if [ -n "$need" ]; then
  echo "installing Open MPI and libclang:$need" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # libclang-common-14-dev without its recommends (they pull 32-bit libraries).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    libopenmpi-dev openmpi-bin libclang1-14 >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    libclang-common-14-dev >/dev/null
fi
# As root in a container; more ranks than cores; a VM's shared memory
# (without single-copy: 3x lower allreduce latency here).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
