#!/usr/bin/env bash
# The Python package (python/): builds the extension into a virtual
# environment with maturin and runs its tests with pytest. Run by
# .ci/test.sh after `cargo test`, whose debug CLI the tests compare with.
set -euo pipefail
cd "$(dirname "$0")/.."
# Exact pins, as for the crates: a fresh machine tests what was tested here.
PY_TOOLS=(maturin==1.16.0 pytest==9.2.0 pytest-timeout==2.4.0 numpy==2.4.6 scikit-learn==1.9.1)
VENV=target/pyenv
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" 2>/dev/null; then
  echo "installing python3-venv..." >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    python3-venv python3-dev >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}"
# The dev profile reuses what `cargo test` compiled (the library and its
# dependencies); only PyO3 and the bindings are new.
(cd python && VIRTUAL_ENV="$PWD/../$VENV" PATH="$PWD/../$VENV/bin:$PATH" maturin develop -q)
# A test that runs past 5 minutes fails with every thread's stack instead of
# holding CI up (the longest takes about a minute).
GRADFREE_CLI="$PWD/target/debug/gradfree" "$VENV/bin/python" -m pytest -q --timeout=300 python/tests
