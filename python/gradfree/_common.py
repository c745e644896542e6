"""What every estimator shares: input checks, seeds, label encoding, the
fit's measurement, and the model files (the CLI's model.safetensors, with
the Python side's own metadata under one extra key)."""

import json
import os

import numpy as np
from sklearn.utils import check_random_state

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _validate_data = None

from . import _core

DEVICES = ("auto", "gpu", "cpu")
PRECISIONS = ("f32", "f64")

# The metadata key the Python package adds to a model file; the CLI reads
# only its own key ("gradfree") and ignores this one.
PYTHON_KEY = "gradfree_python"


def validate(est, X, y=None, reset=True, **kw):
    """Checks X (and y) as scikit-learn does: 2-D, float64, finite, at least
    one row; sets or checks ``n_features_in_``."""
    kw.setdefault("dtype", np.float64)
    kw.setdefault("order", "C")
    if _validate_data is not None:
        if y is None:
            return _validate_data(est, X, reset=reset, **kw)
        return _validate_data(est, X, y, reset=reset, **kw)
    if y is None:  # pragma: no cover - older scikit-learn
        return est._validate_data(X, reset=reset, **kw)
    return est._validate_data(X, y, reset=reset, **kw)  # pragma: no cover


def require_y(est, y):
    if y is None:
        raise ValueError(
            f"{type(est).__name__} requires y to be passed, but the target y is None"
        )


def flat(X):
    """The rows of a checked 2-D float64 array as one contiguous vector."""
    return np.ascontiguousarray(X, dtype=np.float64).reshape(-1)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r}: use one of {', '.join(map(repr, choices))}")


def check_device(device, precision):
    check_choice("device", device, DEVICES)
    check_choice("precision", precision, PRECISIONS)


def check_positive_int(name, value, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_number(name, value, low=None, strictly=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (strictly and value == low)):
        raise ValueError(f"{name} must be {'>' if strictly else '>='} {low}, got {value}")
    return value


def seed_of(random_state):
    """The engine's seed: an int as given (so that the CLI's --seed N gives
    the same model), else a draw from the RandomState or the global one."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def encode_labels(y):
    """``classes_`` and the labels as indices into them (uint32). Labels
    must be integers or strings (or another type numpy can sort)."""
    from sklearn.utils.multiclass import check_classification_targets

    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one label per row (1-D), got shape {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity")
    check_classification_targets(y)
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"a classifier needs at least two classes in y; got 1 class ({classes[0]!r})"
        )
    return classes, index.astype(np.uint32)


def integer_values(classes):
    """The classes as int64 when they are integers (what the CLI's model
    files store), else None."""
    if classes.dtype.kind in "iu":
        return [int(c) for c in classes]
    if classes.dtype.kind == "f" and np.all(classes == np.round(classes)):
        return [int(c) for c in classes]
    return None


def apply_measurement(est, history, measurement):
    """The fitted attributes every estimator has: ``history_`` (the
    metrics.jsonl records), ``gwms_``, ``seconds_``, ``joules_`` (None
    without an energy sensor) and ``energy_note_``."""
    m = json.loads(measurement)
    est.history_ = json.loads(history)
    est.gwms_ = float(m["gwms"])
    est.seconds_ = float(m["seconds"])
    est.joules_ = None if m.get("joules") is None else float(m["joules"])
    est.energy_note_ = m.get("energy_note", "")


def measurement_from_file(est, own, py):
    """The measurement of a loaded model: what the Python package saved,
    else the run totals the CLI records, else the sum of its epoch records
    (None when the file has neither)."""
    if "measurement" in py:
        m = py["measurement"]
    else:
        totals = own.get("run_totals") or {}
        history = est.history_ if isinstance(est.history_, list) else []
        gwms = totals.get("gwms", sum(e.get("gwms", 0.0) for e in history) if history else None)
        seconds = totals.get("seconds", sum(e.get("seconds", 0.0) for e in history) if history else None)
        m = {
            "gwms": gwms,
            "seconds": seconds,
            "joules": totals.get("joules"),
            "energy_note": "the totals recorded in the model file",
        }
    est.gwms_ = None if m.get("gwms") is None else float(m["gwms"])
    est.seconds_ = None if m.get("seconds") is None else float(m["seconds"])
    est.joules_ = None if m.get("joules") is None else float(m["joules"])
    est.energy_note_ = m.get("energy_note", "")


def measurement_of(est):
    return {
        "gwms": est.gwms_,
        "seconds": est.seconds_,
        "joules": est.joules_,
        "energy_note": est.energy_note_,
    }


# ---- model files --------------------------------------------------------


def read_header(data):
    """The JSON header of safetensors bytes and the offset of its data."""
    if len(data) < 8:
        raise ValueError("not a safetensors file (too short)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file (header is not an object)")
    return header, 8 + n


def metadata(data):
    """(gradfree's metadata, the Python package's) of a model file."""
    header, _ = read_header(data)
    meta = header.get("__metadata__") or {}
    own = json.loads(meta["gradfree"]) if "gradfree" in meta else {}
    py = json.loads(meta[PYTHON_KEY]) if PYTHON_KEY in meta else {}
    return own, py


def with_python_metadata(data, value):
    """The model bytes with the Python package's metadata set to ``value``
    (the tensors and gradfree's own metadata unchanged)."""
    header, start = read_header(data)
    header.setdefault("__metadata__", {})[PYTHON_KEY] = json.dumps(value)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[start:]


def write_model(path, data):
    """Writes a model file atomically (a temporary name, then a rename)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_model(path):
    with open(os.fspath(path), "rb") as f:
        return f.read()


def classes_metadata(classes):
    return {"classes": classes.tolist(), "classes_kind": classes.dtype.kind}


def classes_from_metadata(py, fallback):
    if "classes" in py:
        kind = py.get("classes_kind", "")
        return np.asarray(py["classes"], dtype=object if kind == "O" else None)
    return np.asarray(fallback)


__all__ = ["_core"]
