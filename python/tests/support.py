"""Shared test helpers: the CLI binary, safetensors tensors, interrupts."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli():
    """The gradfree CLI built from this repository (GRADFREE_CLI, else
    target/release or target/debug); skips the test when there is none."""
    env = os.environ.get("GRADFREE_CLI")
    candidates = [Path(env)] if env else [ROOT / "target" / p / "gradfree" for p in ("release", "debug")]
    for c in candidates:
        if c.is_file():
            return str(c)
    pytest.skip("no gradfree CLI binary (build it with cargo build, or set GRADFREE_CLI)")


def model_tensors(data):
    """The tensors of safetensors bytes by name (float64 arrays)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F64", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[base + a : base + b], dtype="<f8").reshape(t["shape"])
    return out


def cli_tensors(path):
    return model_tensors(Path(path).read_bytes())


def assert_interrupted(fit, delay):
    """Runs ``fit()`` with a SIGINT after ``delay`` seconds: it must end with
    KeyboardInterrupt within 30 s.

    Python's own SIGINT handler is installed meanwhile: a process started in
    the background by a non-interactive shell inherits SIGINT ignored, and
    Python then installs none (CI so started trained a whole fit, until
    killed)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fit()
        assert time.monotonic() - t0 < 30
    finally:
        signal.signal(signal.SIGINT, previous)
