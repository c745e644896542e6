"""scikit-learn estimators over gradfree's decoders and factorizations:
non-negative matrix factorization by RRR (online, in batches), StarNet
decoders trained layer by layer, and the RRR autoencoder with binary or
zigmoid codes and its generative model."""

import json
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _common as c
from ._common import _core


def _widths(name, value, allow_empty=True):
    """A tuple of positive ints (an int is one width)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    if value is None:
        value = ()
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {value!r}") from None
    if not value and not allow_empty:
        raise ValueError(f"{name} must hold at least one width")
    return [c.check_positive_int(f"each width of {name}", w) for w in value]


def _json_params(est):
    """The estimator's parameters as JSON values (tuples as lists), with
    ``random_state`` replaced by the seed the fit used."""

    def plain(v):
        if isinstance(v, (tuple, list, np.ndarray)):
            return [plain(x) for x in v]
        return v.item() if isinstance(v, np.generic) else v

    params = est.get_params(deep=False)
    params["random_state"] = est.seed_
    return {k: plain(v) for k, v in params.items()}


def _params_from(cls, py, fallback):
    """Constructor parameters: those ``save`` recorded, else ``fallback``
    (what the CLI's file says); lists become tuples."""
    saved = py.get("params")
    params = dict(fallback)
    if isinstance(saved, dict):
        known = cls().get_params(deep=False)
        for k, v in saved.items():
            if k in known:
                params[k] = tuple(v) if isinstance(v, list) else v
    return params


class _DecoderFile:
    """save/load plumbing shared by the three estimators."""

    def save(self, path):
        """Writes the model as the CLI's ``model.safetensors`` (the CLI's
        commands for this method read it); the parameters, epoch records
        and this fit's measurement go in one extra metadata entry the CLI
        ignores."""
        check_is_fitted(self, "model_")
        extra = {
            "measurement": c.measurement_of(self),
            "params": _json_params(self),
            "history": self.history_,
        }
        c.write_model(path, c.with_python_metadata(self.model_, extra))
        return self

    def _loaded(self, data, own, py, history):
        self.model_ = data
        self.history_ = py.get("history", history)
        # A file that does not say: the CLI's default seed.
        rs = self.random_state
        self.seed_ = int(rs) if isinstance(rs, (int, np.integer)) and not isinstance(rs, bool) else 1
        c.measurement_from_file(self, own, py)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _seed(est):
    """Checks the device and precision; the engine's seed of a fit."""
    c.check_device(est.device, est.precision)
    return c.seed_of(est.random_state)


class RRRNMF(_DecoderFile, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorization X ≈ W H by relaxed-reflect-reflect
    (Elser, "Learning without loss", section 3), online: every batch of
    rows is one RRR problem warm-started from the weights so far; the codes
    of the rows are then their non-negative least-squares fit given the
    weights. The CLI's ``rrr nmf --data``.

    Parameters
    ----------
    n_components : int, default=8
        Number of codes r (the CLI's ``--rank``); at most the number of
        features and of rows.
    batch_size : int, default=50
        Rows per batch (the CLI's ``--batch``).
    epochs : int, default=30
        Passes over the data.
    iters_per_batch : int, default=4
        RRR iterations per batch.
    beta : float, default=1.0
        RRR step β.
    omega : float, default=2.0
        Norm Ω of each code's weights (each row of ``components_``).
    device : {"auto", "gpu", "cpu"}, default="auto"
    precision : {"f32", "f64"}, default="f32"
    random_state : int, RandomState or None, default=None
        An int is the engine's seed (the CLI's ``--seed``).
    verbose : bool, default=False
        Print a line per epoch and a progress bar.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The weights H (non-negative, each row of norm Ω).
    n_components_, n_features_in_, reconstruction_err_ (Frobenius norm
    of X − W H on the training rows), model_ (the model file's bytes:
    the training codes and the weights), history_ (one dict per epoch, the
    CLI's metrics.jsonl records), seed_, gwms_, seconds_, joules_ (None
    without an energy sensor), energy_note_.
    """

    def __init__(
        self,
        n_components=8,
        batch_size=50,
        epochs=30,
        iters_per_batch=4,
        beta=1.0,
        omega=2.0,
        device="auto",
        precision="f32",
        random_state=None,
        verbose=False,
    ):
        self.n_components = n_components
        self.batch_size = batch_size
        self.epochs = epochs
        self.iters_per_batch = iters_per_batch
        self.beta = beta
        self.omega = omega
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    @staticmethod
    def _nonnegative(X):
        if X.size and X.min() < 0:
            raise ValueError(
                f"Negative values in data passed to RRRNMF (it needs non-negative data; min {X.min()})"
            )

    def fit(self, X, y=None):
        """Factorizes X (n_samples × n_features, non-negative)."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None, **params):
        """Fits, then the codes W of X (n_samples × n_components), the
        ones the model file stores: X ≈ W @ components_."""
        return self._fit(X)

    def _fit(self, X):
        X = c.validate(self, X)
        self._nonnegative(X)
        rank = c.check_positive_int("n_components", self.n_components)
        if rank > min(X.shape):
            raise ValueError(
                f"n_components={rank} must not exceed the number of features "
                f"({X.shape[1]}) or of rows ({X.shape[0]})"
            )
        omega = c.check_number("omega", self.omega, 0.0, strictly=True)
        settings = {
            "batch": c.check_positive_int("batch_size", self.batch_size),
            "epochs": c.check_positive_int("epochs", self.epochs),
            "iters_per_batch": c.check_positive_int("iters_per_batch", self.iters_per_batch),
            "beta": c.check_number("beta", self.beta, 0.0, strictly=True),
            "seed": _seed(self),
        }
        model, history, measurement = _core.rrr_nmf_fit(
            c.flat(X),
            X.shape[1],
            rank,
            omega,
            json.dumps(settings),
            self.device,
            self.precision,
            bool(self.verbose),
        )
        self.model_ = model
        self.seed_ = settings["seed"]
        c.apply_measurement(self, history, measurement)
        self._set_components()
        shape, codes = _core.model_tensor(self.model_, "codes")
        codes = codes.reshape(shape)
        self.reconstruction_err_ = float(np.linalg.norm(X - codes @ self.components_))
        return codes

    def _set_components(self):
        shape, w = _core.model_tensor(self.model_, "weights")
        self.components_ = w.reshape(shape)
        self.n_components_ = shape[0]

    @property
    def _n_features_out(self):
        return self.n_components_

    def transform(self, X):
        """The codes W of X given the fitted weights: the non-negative
        least-squares fit of X ≈ W @ components_ (n_samples ×
        n_components)."""
        check_is_fitted(self, "model_")
        X = c.validate(self, X, reset=False)
        self._nonnegative(X)
        return _core.rrr_nmf_transform(self.model_, c.flat(X)).reshape(X.shape[0], -1)

    def inverse_transform(self, X):
        """The data of codes: X @ components_ (n_samples × n_features)."""
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_components_:
            raise ValueError(
                f"codes must be a 2-D array of {self.n_components_} columns, got shape {X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("codes contain NaN or infinity")
        return X @ self.components_

    @classmethod
    def load(cls, path):
        """A fitted factorization from a model file of ``save`` or of the
        CLI's ``rrr nmf --data``. (The CLI's file does not record the batch
        size, epochs or iterations: those keep their defaults.)"""
        data = c.read_model(path)
        info = json.loads(_core.rrr_nmf_info(data))
        own, py = c.metadata(data)
        fallback = {
            "n_components": info["rank"],
            "beta": info["beta"] if info["beta"] is not None else 1.0,
            "omega": info["omega"] if info["omega"] is not None else 2.0,
            "random_state": info["seed"],
        }
        est = cls(**_params_from(cls, py, fallback))
        est._loaded(data, own, py, [])
        est.n_features_in_ = info["dim"]
        est._set_components()
        est.reconstruction_err_ = None
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags


class StarNetDecoder(_DecoderFile, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A StarNet decoder (Zadeh et al.): layers h ↦ leaky_relu(W h + c)
    from a latent code up to the data, trained layer by layer from the top
    by exact linear solves (latents, then weights), no gradients. Codes of
    new rows come from the layer-wise pseudo-inverse; samples decode codes
    drawn from a Gaussian fitted to the training codes. The CLI's
    ``starnet train|encode|decode|sample|score``.

    Parameters
    ----------
    n_components : int, default=8
        Latent width d₀.
    hidden_layers : tuple of int, default=(32,)
        Widths between the latent and the data, from the latent up; with
        ``n_components`` the CLI's ``--layers`` ("8,32"). Widths must not
        shrink toward the data (n_components ≤ hidden… ≤ n_features).
    conv : str or None, default=None
        Conv-unpool layers instead of dense ones, the CLI's ``--conv``
        ("C:KxK:U,…" from the latent up; needs square one-channel images,
        n_features = S²). ``n_components`` and ``hidden_layers`` are then
        ignored; the widths come from the spec.
    epochs : int, default=5
        Latent/weight solve epochs per layer.
    alpha : float, default=0.5
        Leaky-ReLU negative slope α.
    weight_sample : int or None, default=None
        Rows per weight solve, drawn at random every epoch (None: all).
    device : {"auto", "gpu", "cpu"}, default="auto"
        Also used by transform, inverse_transform, sample and scores.
    precision : {"f32", "f64"}, default="f32"
    random_state : int, RandomState or None, default=None
        An int is the engine's seed (the CLI's ``--seed``); also the
        default seed of ``sample``.
    verbose : bool, default=False

    Attributes
    ----------
    widths_ (latent … data), n_components_, n_features_in_, model_,
    history_ (one dict per layer and epoch), seed_, gwms_, seconds_,
    joules_, energy_note_.
    """

    def __init__(
        self,
        n_components=8,
        hidden_layers=(32,),
        conv=None,
        epochs=5,
        alpha=0.5,
        weight_sample=None,
        device="auto",
        precision="f32",
        random_state=None,
        verbose=False,
    ):
        self.n_components = n_components
        self.hidden_layers = hidden_layers
        self.conv = conv
        self.epochs = epochs
        self.alpha = alpha
        self.weight_sample = weight_sample
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Trains the decoder on X (n_samples × n_features)."""
        X = c.validate(self, X)
        if self.conv is None:
            layers = [c.check_positive_int("n_components", self.n_components)]
            layers += _widths("hidden_layers", self.hidden_layers)
            widths = layers + [X.shape[1]]
            for a, b in zip(widths, widths[1:]):
                if a > b:
                    raise ValueError(
                        f"widths {widths} (n_components, hidden_layers, n_features) must not "
                        "shrink toward the data"
                    )
                if a == b:
                    warnings.warn(
                        f"a layer maps {a} → {b}: equal widths make W square, so every target "
                        "is fit exactly and the latents just invert it (degenerate)",
                        stacklevel=2,
                    )
            conv = None
        else:
            if not isinstance(self.conv, str):
                raise TypeError(f"conv must be a string such as '6:7x7:2,2:7x7:2', got {self.conv!r}")
            layers, conv = [], self.conv
        sample = self.weight_sample
        if sample is not None:
            sample = c.check_positive_int("weight_sample", sample)
        settings = {
            "epochs": c.check_positive_int("epochs", self.epochs),
            "alpha": c.check_number("alpha", self.alpha, 0.0, strictly=True),
            "weight_sample": sample,
            "seed": _seed(self),
        }
        model, history, measurement = _core.starnet_fit(
            c.flat(X),
            X.shape[1],
            layers,
            conv,
            json.dumps(settings),
            self.device,
            self.precision,
            bool(self.verbose),
        )
        self.model_ = model
        self.seed_ = settings["seed"]
        c.apply_measurement(self, history, measurement)
        self._set_widths()
        return self

    def _set_widths(self):
        info = json.loads(_core.starnet_info(self.model_))
        self.widths_ = list(info["widths"])
        self.n_components_ = self.widths_[0]

    @property
    def _n_features_out(self):
        return self.n_components_

    def _rows(self, X):
        check_is_fitted(self, "model_")
        c.check_device(self.device, self.precision)
        return c.validate(self, X, reset=False)

    def _encode(self, X):
        X = self._rows(X)
        codes, scores = _core.starnet_encode(self.model_, c.flat(X), self.device, self.precision)
        return X, codes.reshape(X.shape[0], -1), scores.reshape(X.shape[0], -1)

    def transform(self, X):
        """The codes (latents) of X by the layer-wise pseudo-inverse from
        the top (n_samples × n_components); the CLI's ``starnet encode``."""
        return self._encode(X)[1]

    def inverse_transform(self, X):
        """The decoded rows of codes X (n_samples × n_components →
        n_samples × n_features); the CLI's ``starnet decode``."""
        check_is_fitted(self, "model_")
        c.check_device(self.device, self.precision)
        codes = np.asarray(X, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.n_components_:
            raise ValueError(
                f"codes must be a 2-D array of {self.n_components_} columns, got shape {codes.shape}"
            )
        if not np.all(np.isfinite(codes)):
            raise ValueError("codes contain NaN or infinity")
        out = _core.starnet_decode(self.model_, c.flat(codes), self.device, self.precision)
        return out.reshape(codes.shape[0], -1)

    def sample(self, n_samples=1, random_state=None):
        """``n_samples`` rows decoded from codes drawn from the Gaussian
        fitted to the training codes (n_samples × n_features); the CLI's
        ``starnet sample --count n_samples --seed S``, S the int
        ``random_state`` (default: the fit's seed, ``seed_``)."""
        check_is_fitted(self, "model_")
        c.check_device(self.device, self.precision)
        n = c.check_positive_int("n_samples", n_samples)
        seed = self.seed_ if random_state is None else c.seed_of(random_state)
        _, out = _core.starnet_sample(self.model_, n, seed, self.device, self.precision)
        return out.reshape(n, -1)

    def score_samples(self, X):
        """Minus each row's reconstruction error: −‖x − decode(encode(x))‖₂.
        Larger (closer to 0) is more typical, as scikit-learn expects of
        ``score_samples``; an outlier has a large residual and so a very
        negative score."""
        X, codes, _ = self._encode(X)
        rec = self.inverse_transform(codes)
        return -np.linalg.norm(X - rec, axis=1)

    def score(self, X, y=None):
        """The mean of ``score_samples`` (minus the mean residual norm)."""
        return float(np.mean(self.score_samples(X)))

    def layer_scores(self, X):
        """Each row's residual norm ‖W h + c − ẑ‖ per layer while encoding
        (n_samples × layers, layer 1, the one nearest the latent, first):
        the outlier score of the paper's lemma 4 and the CLI's ``starnet
        score``. Larger is more atypical."""
        return self._encode(X)[2]

    @classmethod
    def load(cls, path):
        """A fitted decoder from a model file of ``save`` or of the CLI's
        ``starnet train``. (The CLI's file does not record the epochs,
        weight sample, seed or precision: those keep their defaults, and
        transform, inverse_transform, sample and the scores run in the
        estimator's ``precision``.)"""
        data = c.read_model(path)
        info = json.loads(_core.starnet_info(data))
        own, py = c.metadata(data)
        widths = info["widths"]
        fallback = {"n_components": widths[0], "hidden_layers": tuple(widths[1:-1]),
                    "alpha": info["alpha"]}
        shapes = info["conv"]
        if shapes and all(s is not None for s in shapes):
            fallback["conv"] = ",".join(f"{s['c_in']}:{s['k']}x{s['k']}:{s['u']}" for s in shapes)
        est = cls(**_params_from(cls, py, fallback))
        est._loaded(data, own, py, [])
        est.n_features_in_ = widths[-1]
        est._set_widths()
        return est


class RRRAutoencoder(_DecoderFile, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """The RRR autoencoder (Elser, "Learning without loss", section 6): a
    cyclic net data → encoder… → code → decoder… → data trained by
    relaxed-reflect-reflect on batches of data items and of code items
    sampled from the codes so far (invertible, data-enveloping,
    disentangled codes), with a gapped activation at every node; and,
    when asked, the generative model: a classifier of genuine codes
    against samples of the code distribution Z, whose accepted samples
    are decoded. The CLI's ``rrr autoencode --data`` (with
    ``--generator``) and ``rrr encode|decode|generate``.

    Parameters
    ----------
    n_components : int, default=10
        Code nodes (the CLI's ``--code``).
    encoder_layers, decoder_layers : tuple of int, default=()
        Hidden widths between the data and the code, and between the code
        and the data.
    activation : {"zigmoid", "step"}, default="zigmoid"
        "zigmoid": clamp((z + m)/2m, 0, 1), codes in [0, 1] (images);
        "step": 0 or 1, binary codes (binary data).
    margin : float, default=0.4
        Activation half-width m.
    omega : float, default=10.0
        Weight norm Ω per node.
    beta : float, default=1.0
        RRR step β.
    batch_size : int, default=200
        Data items per batch (capped at the training rows).
    codes_per_batch : int, default=20
        Code items per batch (the CLI's ``--codes``).
    iters_per_batch : int, default=50
    epochs : int, default=10
        The CLI's default is 40, for MNIST; on small sets the later epochs
        add little (digits / 16, 10 codes: rms 0.146 after 10 epochs in
        2 s on two cores, 0.145 after 40 in 9 s).
    tol : float, default=0.0
        Stop a batch once RRR_err falls below it (0: never).
    validation_fraction : float or None, default=None
        Hold out this fraction of the rows (the last ones), as the CLI's
        ``--split``: the generator's rates are then measured on them.
    generator : tuple of int, True or None, default=None
        Also train the generative model's classifier with these hidden
        widths (code → hidden… → 2; True: (50, 50, 50)), the CLI's
        ``--generator``. ``sample`` then returns decoded samples of Z that
        the classifier accepts; without it, decoded samples of Z.
    fpa : float, default=0.25
        Generator: false-positive allowance (fraction of a batch's fakes
        that may take the genuine label).
    gen_omega, gen_margin, gen_batch_size, gen_epochs,
    gen_iters_per_batch, gen_fakes : the generator's Ω (5.0), class margin
        (0.1), batch (200), epochs (20), iterations per batch (100) and fake
        codes per genuine code (1).
    device : {"auto", "gpu", "cpu"}, default="auto"
        Training only: transform, inverse_transform and sample run on the
        host, in f64.
    precision : {"f32", "f64"}, default="f32"
    random_state : int, RandomState or None, default=None
        An int is the engine's seed (the CLI's ``--seed``); also the
        default seed of ``sample``.
    verbose : bool, default=False

    Attributes
    ----------
    n_components_, n_features_in_, has_generator_, model_, history_ (the
    autoencoder's epoch records, then the generator's, marked
    "stage": "generator"), seed_, gwms_, seconds_, joules_, energy_note_.
    """

    def __init__(
        self,
        n_components=10,
        encoder_layers=(),
        decoder_layers=(),
        activation="zigmoid",
        margin=0.4,
        omega=10.0,
        beta=1.0,
        batch_size=200,
        codes_per_batch=20,
        iters_per_batch=50,
        epochs=10,
        tol=0.0,
        validation_fraction=None,
        generator=None,
        fpa=0.25,
        gen_omega=5.0,
        gen_margin=0.1,
        gen_batch_size=200,
        gen_epochs=20,
        gen_iters_per_batch=100,
        gen_fakes=1,
        device="auto",
        precision="f32",
        random_state=None,
        verbose=False,
    ):
        self.n_components = n_components
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.activation = activation
        self.margin = margin
        self.omega = omega
        self.beta = beta
        self.batch_size = batch_size
        self.codes_per_batch = codes_per_batch
        self.iters_per_batch = iters_per_batch
        self.epochs = epochs
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.generator = generator
        self.fpa = fpa
        self.gen_omega = gen_omega
        self.gen_margin = gen_margin
        self.gen_batch_size = gen_batch_size
        self.gen_epochs = gen_epochs
        self.gen_iters_per_batch = gen_iters_per_batch
        self.gen_fakes = gen_fakes
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def _split(self, X):
        f = self.validation_fraction
        if f is None:
            return X, X[:0]
        f = c.check_number("validation_fraction", f)
        if not 0.0 < f < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {f}")
        n = X.shape[0]
        if n < 2:
            raise ValueError("validation_fraction needs at least two rows")
        keep = n - min(max(int(np.round(n * f)), 1), n - 1)
        return X[:keep], X[keep:]

    def _generator_settings(self):
        g = self.generator
        if g is None or g is False:
            return None
        hidden = [50, 50, 50] if g is True else _widths("generator", g, allow_empty=False)
        fpa = c.check_number("fpa", self.fpa, 0.0)
        if fpa >= 1.0:
            raise ValueError(f"fpa must be in [0, 1), got {fpa}")
        return {
            "hidden": hidden,
            "fpa": fpa,
            "omega": c.check_number("gen_omega", self.gen_omega, 0.0, strictly=True),
            "margin": c.check_number("gen_margin", self.gen_margin, 0.0),
            "batch": c.check_positive_int("gen_batch_size", self.gen_batch_size),
            "epochs": c.check_positive_int("gen_epochs", self.gen_epochs),
            "iters": c.check_positive_int("gen_iters_per_batch", self.gen_iters_per_batch),
            "fakes": c.check_positive_int("gen_fakes", self.gen_fakes),
        }

    def fit(self, X, y=None):
        """Trains on X (n_samples × n_features, values in [0, 1]), then the
        generator when ``generator`` is set."""
        X = c.validate(self, X)
        if X.size and (X.min() < 0.0 or X.max() > 1.0):
            raise ValueError(
                "RRRAutoencoder needs values in [0, 1] (the activations' range); "
                f"X has values in [{X.min()}, {X.max()}] (scale it, e.g. with MinMaxScaler)"
            )
        train, held = self._split(X)
        c.check_choice("activation", self.activation, ("zigmoid", "step"))
        settings = {
            "batch": min(c.check_positive_int("batch_size", self.batch_size), train.shape[0]),
            "codes": c.check_positive_int("codes_per_batch", self.codes_per_batch),
            "epochs": c.check_positive_int("epochs", self.epochs),
            "iters_per_batch": c.check_positive_int("iters_per_batch", self.iters_per_batch),
            "tol": c.check_number("tol", self.tol, 0.0),
            "beta": c.check_number("beta", self.beta, 0.0, strictly=True),
            "omega": c.check_number("omega", self.omega, 0.0, strictly=True),
            "margin": c.check_number("margin", self.margin, 0.0, strictly=True),
            "activation": self.activation,
            "seed": _seed(self),
        }
        generator = self._generator_settings()
        code = c.check_positive_int("n_components", self.n_components)
        encoder = _widths("encoder_layers", self.encoder_layers)
        decoder = _widths("decoder_layers", self.decoder_layers)
        model, history, measurement = _core.rrr_autoencode_fit(
            c.flat(train),
            c.flat(held),
            X.shape[1],
            encoder,
            code,
            decoder,
            json.dumps(settings),
            None if generator is None else json.dumps(generator),
            self.device,
            self.precision,
            bool(self.verbose),
        )
        self.model_ = model
        self.seed_ = settings["seed"]
        c.apply_measurement(self, history, measurement)
        self._set_info()
        return self

    def _set_info(self):
        info = json.loads(_core.rrr_autoencode_info(self.model_))
        self.n_components_ = info["code"]
        self.has_generator_ = info["generator"] is not None
        return info

    @property
    def _n_features_out(self):
        return self.n_components_

    def transform(self, X):
        """The codes E(x) of the rows of X (n_samples × n_components):
        in [0, 1] for the zigmoid, 0 or 1 for the step; the CLI's ``rrr
        encode``."""
        check_is_fitted(self, "model_")
        X = c.validate(self, X, reset=False)
        return _core.rrr_autoencode_encode(self.model_, c.flat(X)).reshape(X.shape[0], -1)

    def inverse_transform(self, X):
        """The data D(c) of codes X (n_samples × n_components →
        n_samples × n_features); the CLI's ``rrr decode``."""
        check_is_fitted(self, "model_")
        codes = np.asarray(X, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.n_components_:
            raise ValueError(
                f"codes must be a 2-D array of {self.n_components_} columns, got shape {codes.shape}"
            )
        if not np.all(np.isfinite(codes)):
            raise ValueError("codes contain NaN or infinity")
        out = _core.rrr_autoencode_decode(self.model_, c.flat(codes))
        return out.reshape(codes.shape[0], -1)

    def sample(self, n_samples=1, random_state=None):
        """``n_samples`` decoded samples of Z (n_samples × n_features),
        each code node drawn from its own training codes. With a generator
        (``generator`` set at fit), only samples it accepts: the first
        ``n_samples`` accepted ones, which are what the CLI's ``rrr
        generate --seed S`` decodes from as many draws; the seed S is the
        int ``random_state`` (default: the fit's seed, ``seed_``). Raises
        RuntimeError when the generator accepts too few (fewer than
        ``n_samples`` of max(10⁴, 100 · n_samples) draws)."""
        check_is_fitted(self, "model_")
        n = c.check_positive_int("n_samples", n_samples)
        seed = self.seed_ if random_state is None else c.seed_of(random_state)
        out, _ = _core.rrr_autoencode_sample(self.model_, n, seed, max(10_000, 100 * n))
        return out.reshape(n, -1)

    @classmethod
    def load(cls, path):
        """A fitted autoencoder from a model file of ``save`` or of the
        CLI's ``rrr autoencode`` (a layered net). (The CLI's file does not
        record the generator's fpa or fakes per code: those keep their
        defaults.)"""
        data = c.read_model(path)
        info = json.loads(_core.rrr_autoencode_info(data))
        own, py = c.metadata(data)
        if info["encoder"] is None:
            raise ValueError(
                f"{path}: the model's net is not a layered, fully connected one; "
                "RRRAutoencoder loads layered nets only"
            )
        s = info["settings"]
        fallback = {
            "n_components": info["code"],
            "encoder_layers": tuple(info["encoder"]),
            "decoder_layers": tuple(info["decoder"]),
            "activation": s["activation"],
            "margin": s["margin"],
            "omega": s["omega"],
            "beta": s["beta"],
            "batch_size": s["batch"],
            "codes_per_batch": s["codes"],
            "iters_per_batch": s["iters_per_batch"],
            "epochs": s["epochs"],
            "tol": s["tol"],
            "random_state": s["seed"],
            "precision": info.get("precision") or "f32",
        }
        g = info["generator"]
        if g is not None:
            gs = g["settings"]
            fallback.update(
                generator=tuple(g["hidden"]) if g["hidden"] is not None else True,
                gen_omega=gs["omega"],
                gen_margin=gs["margin"],
                gen_batch_size=gs["batch"],
                gen_epochs=gs["epochs"],
                gen_iters_per_batch=gs["iters_per_batch"],
            )
        est = cls(**_params_from(cls, py, fallback))
        est._loaded(data, own, py, [dict(h, run=1) for h in info["history"]])
        est.n_features_in_ = info["data"]
        est._set_info()
        return est
