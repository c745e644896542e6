"""scikit-learn classifiers over gradfree's engine: the RRR classifier
("Learning without loss") and layer-wise HSIC networks (W_s or W*)."""

import json
import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _common as c
from ._common import _core


class _ModelFile:
    """save/load of a fitted estimator as the CLI's model.safetensors."""

    def save(self, path):
        """Writes the model as the CLI's ``model.safetensors`` (the CLI's
        ``predict`` reads it); the classes and this fit's measurement go in
        one extra metadata entry the CLI ignores."""
        check_is_fitted(self, "model_")
        extra = c.classes_metadata(self.classes_)
        extra["measurement"] = c.measurement_of(self)
        c.write_model(path, c.with_python_metadata(self.model_, extra))
        return self


class RRRClassifier(_ModelFile, ClassifierMixin, BaseEstimator):
    """A layered ReLU classifier trained by relaxed-reflect-reflect (Elser,
    "Learning without loss"): every batch is a constraint-satisfaction
    problem, no gradients.

    Parameters
    ----------
    hidden_layers : tuple of int, default=(20,)
        Widths of the hidden layers; the input width comes from X and the
        output width from the classes.
    margin : float, default=1.0
        Class margin Δ. The CLI's default is 0.1, which suits data in
        [0, 1] (MNIST); 1.0 does well on raw, standardized and [0, 1]-scaled
        data alike (scikit-learn's digits, test accuracy 0.91–0.95, 0.96 and
        0.96 against 0.85, 0.93–0.94 and 0.97–0.98 with 0.1).
    beta : float, default=1.0
        RRR step β.
    omega : float, default=2.0
        Weight norm Ω per node.
    upsilon : float, default=1.0
        Class-node metric Υ.
    batch_size : int, default=128
        Items per batch |K| (capped at the number of rows).
    epochs : int, default=10
    iters_per_batch : int, default=100
        RRR iterations per batch.
    tol : float, default=0.0
        Stop a batch once RRR_err falls below it (0: run every iteration).
    exempt : int or float, default=0
        Eccentric exemptions per batch: an item count, or a fraction of
        the batch when a float in (0, 1).
    relabel : int or float, default=0
        Relabels per batch (count or fraction), as ``exempt``.
    device : {"auto", "gpu", "cpu"}, default="auto"
        "auto" takes a hardware GPU when there is one, else the CPU.
    precision : {"f32", "f64"}, default="f32"
    random_state : int, RandomState or None, default=None
        An int is the engine's seed (the CLI's ``--seed``).
    verbose : bool, default=False
        Print the run's lines and a progress bar.

    Attributes
    ----------
    classes_, n_features_in_, model_ (the model file's bytes), history_
    (one dict per epoch, the CLI's metrics.jsonl records), gwms_,
    seconds_, joules_ (None without an energy sensor), energy_note_.
    """

    def __init__(
        self,
        hidden_layers=(20,),
        margin=1.0,
        beta=1.0,
        omega=2.0,
        upsilon=1.0,
        batch_size=128,
        epochs=10,
        iters_per_batch=100,
        tol=0.0,
        exempt=0,
        relabel=0,
        device="auto",
        precision="f32",
        random_state=None,
        verbose=False,
    ):
        self.hidden_layers = hidden_layers
        self.margin = margin
        self.beta = beta
        self.omega = omega
        self.upsilon = upsilon
        self.batch_size = batch_size
        self.epochs = epochs
        self.iters_per_batch = iters_per_batch
        self.tol = tol
        self.exempt = exempt
        self.relabel = relabel
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def _hidden(self):
        h = self.hidden_layers
        if isinstance(h, (int, np.integer)) and not isinstance(h, bool):
            h = (h,)
        try:
            h = tuple(h)
        except TypeError:
            raise TypeError(f"hidden_layers must be a tuple of ints, got {h!r}") from None
        return [c.check_positive_int("each hidden layer width", w) for w in h]

    @staticmethod
    def _budget(name, value, batch):
        """Items per batch, as the CLI reads --exempt and --relabel: a count,
        or a fraction rounded to the nearest item (half away from zero);
        either must stay below the batch size."""
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a count or a fraction, got {value!r}")
        if isinstance(value, (int, np.integer)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            n = int(value)
        elif isinstance(value, (float, np.floating)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} as a fraction of the batch must be in [0, 1), got {value}")
            n = math.floor(value * batch + 0.5)
        else:
            raise TypeError(f"{name} must be a count or a fraction, got {type(value).__name__}")
        if n >= batch:
            raise ValueError(f"{name}={value!r} is {n} items: it must be below the batch size {batch}")
        return n

    def _settings(self, n_rows):
        c.check_device(self.device, self.precision)
        batch = min(c.check_positive_int("batch_size", self.batch_size), n_rows)
        return {
            "batch": batch,
            "epochs": c.check_positive_int("epochs", self.epochs),
            "iters_per_batch": c.check_positive_int("iters_per_batch", self.iters_per_batch),
            "tol": c.check_number("tol", self.tol, 0.0),
            "beta": c.check_number("beta", self.beta, 0.0, strictly=True),
            "omega": c.check_number("omega", self.omega, 0.0, strictly=True),
            "upsilon": c.check_number("upsilon", self.upsilon, 0.0, strictly=True),
            "margin": c.check_number("margin", self.margin, 0.0),
            "exempt": self._budget("exempt", self.exempt, batch),
            "relabel": self._budget("relabel", self.relabel, batch),
            "false_positives": 0,
            "seed": c.seed_of(self.random_state),
        }

    def fit(self, X, y):
        """Trains on X (n_samples × n_features) and labels y."""
        c.require_y(self, y)
        X, y = c.validate(self, X, y)
        self.classes_, codes = c.encode_labels(y)
        settings = self._settings(X.shape[0])
        hidden = self._hidden()
        model, history, measurement = _core.rrr_classify_fit(
            c.flat(X),
            codes,
            X.shape[1],
            len(self.classes_),
            hidden,
            json.dumps(settings),
            self.device,
            self.precision,
            bool(self.verbose),
        )
        self.model_ = model
        c.apply_measurement(self, history, measurement)
        return self

    def _rows(self, X):
        check_is_fitted(self, "model_")
        return c.validate(self, X, reset=False)

    def predict(self, X):
        """The class of each row."""
        X = self._rows(X)
        return self.classes_[_core.rrr_classify_predict(self.model_, c.flat(X))]

    def decision_function(self, X):
        """The class nodes' outputs (n_samples × n_classes; for two classes
        the second minus the first, as scikit-learn expects). The predicted
        class has the largest."""
        X = self._rows(X)
        scores = _core.rrr_classify_scores(self.model_, c.flat(X)).reshape(X.shape[0], -1)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    @classmethod
    def load(cls, path):
        """A fitted classifier from a model file of ``save`` or of the CLI's
        ``rrr classify`` (a layered net)."""
        data = c.read_model(path)
        info = json.loads(_core.rrr_classify_info(data))
        own, py = c.metadata(data)
        s = info["settings"]
        widths = info.get("widths")
        if widths is None:
            raise ValueError(
                f"{path}: the model's net is not a layered, fully connected one; "
                "RRRClassifier loads layered nets only"
            )
        hidden = widths[1:-1]
        est = cls(
            hidden_layers=tuple(hidden),
            margin=s["margin"],
            beta=s["beta"],
            omega=s["omega"],
            upsilon=s["upsilon"],
            batch_size=s["batch"],
            epochs=s["epochs"],
            iters_per_batch=s["iters_per_batch"],
            tol=s["tol"],
            exempt=s["exempt"],
            relabel=s["relabel"],
            precision=own.get("precision", "f32"),
            random_state=s["seed"],
        )
        est.model_ = data
        est.classes_ = c.classes_from_metadata(py, np.arange(info["classes"]))
        est.n_features_in_ = info["data"]
        est.history_ = info["history"]
        c.measurement_from_file(est, own, py)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class HSICClassifier(_ModelFile, TransformerMixin, ClassifierMixin, BaseEstimator):
    """A layer-wise HSIC network with closed-form weights (Wu et al.):
    layers are added until the classes separate, each solved in closed
    form, no gradients.

    Parameters
    ----------
    solver : {"ism", "ws"}, default="ism"
        "ism": W*, the iterative spectral method's solution (random
        features, nearest class mean); "ws": W_s, the kernel mean
        embedding (exact kernels, 5-NN on the training outputs).
    max_layers : int, default=10
        The reference code's cap is 30 (ism) and 29 (ws). On small tabular
        sets the later layers cost most of the time and add no accuracy
        (digits, W*: 10 layers 0.944 in 5 s, 30 layers 0.918 in 17 s).
    test_own_stats : bool, default=False
        Standardize new rows with their own statistics, as the reference
        code does, instead of the training statistics. Off by default so
        that a row's prediction does not depend on the other rows given
        with it (scikit-learn's rule).
    tol, max_iter, exit_silhouette : ISM's stopping rule (0.01, 200, 0.95).
    eigen : {"dense", "lobpcg", "auto"}, default="dense"
        ism: how each iteration finds Φ's smallest eigenpairs: form Φ (as
        the reference), LOBPCG on products with Φ after each layer's first
        iteration (faster on layers that iterate long), or "auto" (LOBPCG
        on the layers where it is cheaper, from 2000 rows).
    cycle_stop : bool, default=True
        ism: end a layer's iterations once they alternate between two
        states, on the state the iteration cap would give (False: run to
        the cap, as the reference).
    smallest_sigma, sigma_steps, exit_h, jitter : W_s's σ search and stop
        (0.05, 20, 0.95, 0.02).
    sigma_rows : int, default=200
        Rows sampled for the σ optimization.
    device : {"auto", "gpu", "cpu"}, default="auto"
    precision : {"f32", "f64"}, default="f64"
    random_state : int, RandomState or None, default=None
    verbose : bool, default=False

    Attributes
    ----------
    classes_, n_features_in_, model_, history_ (one dict per layer),
    n_iter_ (ISM iterations over all layers; layers for ws), gwms_,
    seconds_, joules_, energy_note_.
    """

    def __init__(
        self,
        solver="ism",
        max_layers=10,
        test_own_stats=False,
        tol=0.01,
        max_iter=200,
        exit_silhouette=0.95,
        eigen="dense",
        cycle_stop=True,
        smallest_sigma=0.05,
        sigma_steps=20,
        exit_h=0.95,
        jitter=0.02,
        sigma_rows=200,
        device="auto",
        precision="f64",
        random_state=None,
        verbose=False,
    ):
        self.solver = solver
        self.max_layers = max_layers
        self.test_own_stats = test_own_stats
        self.tol = tol
        self.max_iter = max_iter
        self.exit_silhouette = exit_silhouette
        self.eigen = eigen
        self.cycle_stop = cycle_stop
        self.smallest_sigma = smallest_sigma
        self.sigma_steps = sigma_steps
        self.exit_h = exit_h
        self.jitter = jitter
        self.sigma_rows = sigma_rows
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def _settings(self):
        c.check_choice("solver", self.solver, ("ism", "ws"))
        c.check_device(self.device, self.precision)
        layers = self.max_layers
        common = {
            "max_layers": c.check_positive_int("max_layers", layers),
            "sigma_rows": c.check_positive_int("sigma_rows", self.sigma_rows, 2),
            "test_own_stats": bool(self.test_own_stats),
            "seed": c.seed_of(self.random_state),
        }
        if self.solver == "ism":
            return {
                **common,
                "exit_silhouette": c.check_number("exit_silhouette", self.exit_silhouette),
                "tol": c.check_number("tol", self.tol, 0.0),
                "max_iter": c.check_positive_int("max_iter", self.max_iter),
                "eigen": self._eigen(),
                "cycle_stop": bool(self.cycle_stop),
            }
        return {
            **common,
            "smallest_sigma": c.check_number("smallest_sigma", self.smallest_sigma, 0.0, strictly=True),
            "sigma_steps": c.check_positive_int("sigma_steps", self.sigma_steps),
            "exit_h": c.check_number("exit_h", self.exit_h),
            "jitter": c.check_number("jitter", self.jitter, 0.0),
        }

    def _eigen(self):
        c.check_choice("eigen", self.eigen, ("dense", "lobpcg", "auto"))
        return self.eigen

    def fit(self, X, y):
        """Fits the network on X and labels y."""
        c.require_y(self, y)
        X, y = c.validate(self, X, y, ensure_min_samples=2)
        self.classes_, codes = c.encode_labels(y)
        values = c.integer_values(self.classes_)
        if values is None:
            values = list(range(len(self.classes_)))
        settings = self._settings()
        model, reports, measurement = _core.hsic_fit(
            c.flat(X),
            codes,
            values,
            X.shape[1],
            self.solver,
            json.dumps(settings),
            self.device,
            self.precision,
            bool(self.verbose),
        )
        self.model_ = model
        c.apply_measurement(self, reports, measurement)
        self.n_iter_ = _iterations(self.history_)
        return self

    def _rows(self, X):
        check_is_fitted(self, "model_")
        X = c.validate(self, X, reset=False)
        if self.test_own_stats and X.shape[0] < 2:
            raise ValueError("test_own_stats needs at least two rows to standardize")
        return X

    def predict(self, X):
        """The class of each row."""
        X = self._rows(X)
        pred = _core.hsic_predict(self.model_, c.flat(X), self._predict_device())
        return self.classes_[pred]

    def transform(self, X):
        """The last layer's outputs (n_samples × its width)."""
        X = self._rows(X)
        width, out = _core.hsic_transform(self.model_, c.flat(X), self._predict_device())
        return out.reshape(X.shape[0], width)

    def fit_transform(self, X, y=None, **params):
        """Fits on X and y, then the last layer's outputs of X."""
        if y is None:
            raise ValueError("HSICClassifier.fit_transform needs the labels y")
        return self.fit(X, y).transform(X)

    def _predict_device(self):
        c.check_choice("device", self.device, c.DEVICES)
        return self.device

    @classmethod
    def load(cls, path):
        """A fitted network from a model file of ``save`` or of the CLI's
        ``hsic fit``."""
        data = c.read_model(path)
        info = json.loads(_core.hsic_info(data))
        own, py = c.metadata(data)
        s = info["settings"]
        est = cls(solver=info["solver"], random_state=s.get("seed"))
        params = {k: v for k, v in s.items() if k in est.get_params() and k != "seed"}
        est.set_params(**params)
        est.model_ = data
        est.classes_ = c.classes_from_metadata(py, np.asarray(info["label_values"]))
        est.n_features_in_ = info["dim"]
        est.history_ = own.get("layers", [])
        est.n_iter_ = _iterations(est.history_)
        c.measurement_from_file(est, own, py)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _iterations(layers):
    """ISM iterations summed over the layers (W*), else the layers (W_s)."""
    return int(sum(layer.get("iterations") or 1 for layer in layers))
