"""RRRNMF, StarNetDecoder and RRRAutoencoder: shapes, what each method
achieves on small data, model files, agreement with the CLI, bad input."""

import json
import subprocess

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

from gradfree import RRRNMF, RRRAutoencoder, StarNetDecoder
from support import assert_interrupted, cli, cli_tensors, model_tensors

# Small settings: each fit takes a fraction of a second.
SMALL_NMF = dict(n_components=6, batch_size=40, epochs=5, iters_per_batch=4,
                 device="cpu", precision="f64", random_state=0)
SMALL_STAR = dict(n_components=6, hidden_layers=(16,), epochs=3,
                  device="cpu", precision="f64", random_state=0)
SMALL_AE = dict(n_components=6, batch_size=50, codes_per_batch=10, iters_per_batch=20, epochs=3,
                device="cpu", precision="f64", random_state=0)
SMALL_GEN = dict(generator=(8,), gen_epochs=2, gen_batch_size=100, gen_iters_per_batch=20)


@pytest.fixture(scope="module")
def X():
    """300 of scikit-learn's digits scaled to [0, 1] (multiples of 1/16:
    exact in a CSV file)."""
    return load_digits().data[:300] / 16


def rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _csv(path, X):
    np.savetxt(path, X, delimiter=",", fmt="%.17g")
    return str(path)


def _run_cli(*args):
    subprocess.run([cli(), *map(str, args), "--device", "cpu", "--precision", "f64", "--quiet"],
                   check=True, capture_output=True)


def _same_tensors(cli_path, py_bytes):
    a, b = cli_tensors(cli_path), model_tensors(py_bytes)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-12, err_msg=k)


def _same_history(metrics_path, history):
    lines = [json.loads(t) for t in metrics_path.read_text().splitlines()]
    assert len(lines) == len(history)
    for cli_rec, py_rec in zip(lines, history):
        assert cli_rec.keys() == py_rec.keys()
        for k in cli_rec:
            if isinstance(cli_rec[k], float) and k != "seconds":
                assert py_rec[k] == pytest.approx(cli_rec[k], rel=1e-9, abs=1e-12), k
            elif k != "seconds":
                assert py_rec[k] == cli_rec[k], k


# ---- scikit-learn's estimator checks -------------------------------------------


def _squash(X):
    """Numeric, finite 2-D input mapped into (0, 1) by the logistic
    function, elementwise (so every invariance the checks test holds);
    anything else as given, for the estimator to reject."""
    if hasattr(X, "toarray"):
        return X
    try:
        a = np.asarray(X)
    except Exception:
        return X
    if a.ndim == 2 and a.dtype.kind in "fiub" and a.size and np.isfinite(a).all():
        return 1 / (1 + np.exp(-a.astype(np.float64)))
    return X


class SquashedAutoencoder(RRRAutoencoder):
    """The autoencoder needs values in [0, 1] and the checks' data are not:
    this one maps them in first."""

    def fit(self, X, y=None):
        return super().fit(_squash(X), y)

    def transform(self, X):
        return super().transform(_squash(X))


# Every check runs and passes; scikit-learn itself skips the array-API one
# (SCIPY_ARRAY_API is not set).
@parametrize_with_checks([
    RRRNMF(n_components=1, epochs=2, batch_size=16, device="cpu", random_state=0),
    StarNetDecoder(n_components=1, hidden_layers=(), epochs=2, device="cpu", random_state=0),
    SquashedAutoencoder(n_components=2, epochs=2, iters_per_batch=10, batch_size=16,
                        codes_per_batch=4, device="cpu", random_state=0),
])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- RRRNMF ----------------------------------------------------------------


def test_nmf_factorizes(X):
    est = RRRNMF(**SMALL_NMF)
    W = est.fit_transform(X)
    assert W.shape == (300, 6) and est.components_.shape == (6, 64)
    assert est.n_components_ == 6 and est.n_features_in_ == 64
    assert W.min() >= 0 and est.components_.min() >= 0
    # Every code's weights have norm Ω.
    np.testing.assert_allclose(np.linalg.norm(est.components_, axis=1), 2.0, rtol=1e-9)
    # The stored codes are transform's codes of the training rows.
    np.testing.assert_array_equal(est.transform(X), W)
    np.testing.assert_allclose(est.inverse_transform(W), W @ est.components_)
    err = np.linalg.norm(X - W @ est.components_)
    assert est.reconstruction_err_ == pytest.approx(err)
    # Better than one code, and than the mean row.
    one = RRRNMF(**{**SMALL_NMF, "n_components": 1})
    W1 = one.fit_transform(X)
    assert err < 0.8 * np.linalg.norm(X - W1 @ one.components_)
    assert err < 0.8 * np.linalg.norm(X - X.mean(axis=0))
    assert len(est.history_) == 5
    assert est.history_[-1]["recon_err"] < est.history_[0]["recon_err"]
    assert est.gwms_ > 0 and est.seconds_ > 0 and est.energy_note_
    assert list(est.get_feature_names_out()) == [f"rrrnmf{i}" for i in range(6)]


def test_nmf_matches_the_cli(tmp_path, X):
    out = tmp_path / "run"
    _run_cli("rrr", "nmf", "--data", _csv(tmp_path / "x.csv", X), "--rank", 6, "--batch", 40,
             "--epochs", 5, "--iters-per-batch", 4, "--beta", 1, "--omega", 2, "--seed", 3,
             "--out", out)
    est = RRRNMF(**{**SMALL_NMF, "random_state": 3})
    W = est.fit_transform(X)
    _same_tensors(out / "model.safetensors", est.model_)
    _same_history(out / "metrics.jsonl", est.history_)
    loaded = RRRNMF.load(out / "model.safetensors")
    assert (loaded.n_components, loaded.random_state) == (6, 3)
    np.testing.assert_allclose(loaded.transform(X), W, rtol=1e-12, atol=1e-12)


# ---- StarNetDecoder ----------------------------------------------------------


def test_starnet_encodes_decodes_and_samples(X):
    est = StarNetDecoder(**SMALL_STAR).fit(X)
    assert est.widths_ == [6, 16, 64] and est.n_components_ == 6
    Z = est.transform(X)
    assert Z.shape == (300, 6)
    R = est.inverse_transform(Z)
    assert R.shape == (300, 64)
    # The round trip is much closer to the data than the mean row is.
    assert rms(X, R) < 0.8 * rms(X, X.mean(axis=0))
    assert est.sample(7).shape == (7, 64)
    np.testing.assert_array_equal(est.sample(7, random_state=5), est.sample(7, random_state=5))
    assert len(est.history_) == 2 * 3
    assert {"layer", "epoch", "rms", "elastic"} <= set(est.history_[0])
    # score_samples: minus the residual norm; an outlier scores lower.
    s = est.score_samples(X)
    np.testing.assert_allclose(s, -np.linalg.norm(X - R, axis=1))
    assert est.score(X) == pytest.approx(s.mean())
    odd = np.random.default_rng(0).random((5, 64))
    assert est.score_samples(odd).max() < np.median(s)
    assert est.layer_scores(X[:4]).shape == (4, 2)


def test_starnet_conv_unpool_layers(tmp_path, X):
    # 2 channels of 4×4 → one of 8×8 (the digits' images).
    est = StarNetDecoder(conv="2:3x3:2", epochs=2, device="cpu", precision="f64",
                         random_state=0).fit(X)
    assert est.widths_ == [32, 64]
    Z = est.transform(X)
    assert Z.shape == (300, 32)
    assert rms(X, est.inverse_transform(Z)) < 0.8 * rms(X, X.mean(axis=0))
    # A file without the Python metadata (as the CLI writes it) still
    # gives the spec back.
    path = tmp_path / "bare.safetensors"
    path.write_bytes(est.model_)
    assert StarNetDecoder.load(path).conv == "2:3x3:2"


def test_starnet_matches_the_cli(tmp_path, X):
    out = tmp_path / "run"
    _run_cli("starnet", "train", "--data", _csv(tmp_path / "x.csv", X), "--layers", "6,16",
             "--epochs", 3, "--alpha", 0.5, "--seed", 3, "--out", out)
    est = StarNetDecoder(**{**SMALL_STAR, "random_state": 3}).fit(X)
    _same_tensors(out / "model.safetensors", est.model_)
    _same_history(out / "metrics.jsonl", est.history_)
    loaded = StarNetDecoder.load(out / "model.safetensors")
    assert (loaded.n_components, loaded.hidden_layers) == (6, (16,))
    # The CLI's file does not say in which precision it was trained.
    loaded.set_params(device="cpu", precision="f64")
    np.testing.assert_allclose(loaded.transform(X), est.transform(X), rtol=1e-9, atol=1e-12)
    # The CLI's samples of the Python model are the Python model's.
    est.save(tmp_path / "py.safetensors")
    _run_cli("starnet", "sample", "--model", tmp_path / "py.safetensors", "--count", 5,
             "--seed", 11, "--out", tmp_path / "s")
    cli_samples = np.loadtxt(tmp_path / "s" / "samples.csv", delimiter=",", ndmin=2)
    np.testing.assert_allclose(est.sample(5, random_state=11), cli_samples, rtol=1e-9, atol=1e-12)


# ---- RRRAutoencoder ----------------------------------------------------------


def test_autoencoder_codes_and_reconstructions(X):
    est = RRRAutoencoder(**SMALL_AE).fit(X)
    Z = est.transform(X)
    assert Z.shape == (300, 6) and est.n_components_ == 6
    assert Z.min() >= 0 and Z.max() <= 1
    R = est.inverse_transform(Z)
    assert R.shape == (300, 64) and R.min() >= 0 and R.max() <= 1
    assert rms(X, R) < 0.9 * rms(X, X.mean(axis=0))
    assert est.history_[-1]["data_err"] == pytest.approx(rms(X, R))
    assert not est.has_generator_
    assert est.sample(4).shape == (4, 64)


def test_autoencoder_binary_codes_of_one_hot_items():
    """The 8 → 3 → 8 encoder of the one-hot items with step activations:
    codes are bits, and the round trip beats the best constant guess."""
    E = np.eye(8)
    est = RRRAutoencoder(n_components=3, activation="step", epochs=100, codes_per_batch=8,
                         device="cpu", precision="f64", random_state=0).fit(E)
    Z = est.transform(E)
    assert Z.shape == (8, 3)
    assert set(np.unique(Z)) <= {0.0, 1.0}
    R = est.inverse_transform(Z)
    assert set(np.unique(R)) <= {0.0, 1.0}
    # All zeros gets 1 bit of 8 wrong per item.
    assert np.abs(R - E).mean() < 1 / 8


def test_autoencoder_generator_samples(X):
    est = RRRAutoencoder(**SMALL_AE, **SMALL_GEN).fit(X)
    assert est.has_generator_
    stages = [h.get("stage") for h in est.history_]
    assert stages == [None] * 3 + ["generator"] * 2
    S = est.sample(6)
    assert S.shape == (6, 64) and S.min() >= 0 and S.max() <= 1
    np.testing.assert_array_equal(S, est.sample(6))


def test_autoencoder_matches_the_cli(tmp_path, X):
    out = tmp_path / "run"
    _run_cli("rrr", "autoencode", "--data", _csv(tmp_path / "x.csv", X), "--code", 6,
             "--batch", 50, "--codes", 10, "--iters-per-batch", 20, "--epochs", 3, "--split", 0.2,
             "--generator", 8, "--gen-epochs", 2, "--gen-batch", 100, "--gen-iters", 20,
             "--seed", 3, "--out", out)
    est = RRRAutoencoder(**{**SMALL_AE, **SMALL_GEN, "random_state": 3},
                         validation_fraction=0.2).fit(X)
    _same_tensors(out / "model.safetensors", est.model_)
    _same_history(out / "metrics.jsonl", est.history_)
    assert est.history_[-1]["test_fp"] is not None
    loaded = RRRAutoencoder.load(out / "model.safetensors")
    assert (loaded.n_components, loaded.generator, loaded.random_state) == (6, (8,), 3)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    # The CLI's generator run of the Python model decodes what sample gives.
    est.save(tmp_path / "py.safetensors")
    subprocess.run([cli(), "rrr", "generate", "--model", str(tmp_path / "py.safetensors"),
                    "--count", "40", "--seed", "11", "--out", str(tmp_path / "g"), "--quiet"],
                   check=True, capture_output=True)
    cli_rows = np.loadtxt(tmp_path / "g" / "generated.csv", delimiter=",", ndmin=2)
    assert len(cli_rows) > 0
    if len(cli_rows):
        np.testing.assert_allclose(est.sample(len(cli_rows), random_state=11), cli_rows,
                                   rtol=1e-12, atol=1e-12)


# ---- all three ---------------------------------------------------------------

MAKERS = {
    "nmf": lambda: RRRNMF(**SMALL_NMF),
    "starnet": lambda: StarNetDecoder(**SMALL_STAR),
    "autoencoder": lambda: RRRAutoencoder(**SMALL_AE, **SMALL_GEN),
}


@pytest.mark.parametrize("name", MAKERS)
def test_save_load_round_trip(tmp_path, X, name):
    est = MAKERS[name]().fit(X)
    path = tmp_path / "model.safetensors"
    est.save(path)
    back = type(est).load(path)
    assert back.get_params() == est.get_params()
    Z = est.transform(X)
    np.testing.assert_array_equal(back.transform(X), Z)
    np.testing.assert_array_equal(back.inverse_transform(Z), est.inverse_transform(Z))
    if hasattr(est, "sample"):
        np.testing.assert_array_equal(back.sample(3), est.sample(3))
    assert back.n_features_in_ == 64 and back.n_components_ == 6
    assert back.history_ == est.history_
    assert back.gwms_ == pytest.approx(est.gwms_)
    assert back.seconds_ == pytest.approx(est.seconds_)
    # What save writes is the model the CLI wrote, plus metadata.
    assert model_tensors(path.read_bytes()).keys() == model_tensors(est.model_).keys()


@pytest.mark.parametrize("name", MAKERS)
def test_bad_input_raises(X, name):
    make = MAKERS[name]
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make().fit(bad)
    with pytest.raises(ValueError):
        make().fit(X[:0])
    with pytest.raises(ValueError, match="device"):
        make().set_params(device="tpu").fit(X)
    with pytest.raises(ValueError, match="precision"):
        make().set_params(precision="f16").fit(X)
    with pytest.raises(TypeError):
        make().set_params(epochs=1.5).fit(X)
    with pytest.raises(ValueError):
        make().set_params(epochs=0).fit(X)
    est = make().fit(X)
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :10])
    with pytest.raises(ValueError):
        est.transform(np.full((2, 64), np.inf))
    with pytest.raises(ValueError, match="columns"):
        est.inverse_transform(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        est.inverse_transform(np.full((2, 6), np.nan))


def test_method_specific_bad_input(tmp_path, X):
    with pytest.raises(ValueError, match="non-negative|Negative"):
        RRRNMF(**SMALL_NMF).fit(X - 0.5)
    with pytest.raises(ValueError, match="n_components"):
        RRRNMF(**{**SMALL_NMF, "n_components": 65}).fit(X)
    nmf = RRRNMF(**SMALL_NMF).fit(X)
    with pytest.raises(ValueError, match="non-negative|Negative"):
        nmf.transform(-X)
    with pytest.raises(ValueError, match="shrink"):
        StarNetDecoder(**{**SMALL_STAR, "hidden_layers": (4,)}).fit(X)
    with pytest.raises(ValueError, match="square"):
        StarNetDecoder(**{**SMALL_STAR, "conv": "2:3x3:2"}).fit(X[:, :60])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RRRAutoencoder(**SMALL_AE).fit(X * 2)
    with pytest.raises(ValueError, match="activation"):
        RRRAutoencoder(**{**SMALL_AE, "activation": "relu"}).fit(X)
    with pytest.raises(ValueError, match="validation_fraction"):
        RRRAutoencoder(**SMALL_AE, validation_fraction=1.5).fit(X)
    # A model file of one method is not another's.
    path = tmp_path / "nmf.safetensors"
    nmf.save(path)
    for cls in (StarNetDecoder, RRRAutoencoder):
        with pytest.raises(ValueError):
            cls.load(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    for cls in (RRRNMF, StarNetDecoder, RRRAutoencoder):
        with pytest.raises(ValueError):
            cls.load(junk)


def test_silent_unless_verbose(capfd, X):
    RRRNMF(**SMALL_NMF).fit(X)
    StarNetDecoder(**SMALL_STAR).fit(X)
    RRRAutoencoder(**SMALL_AE).fit(X)
    assert capfd.readouterr().out == ""
    RRRNMF(**{**SMALL_NMF, "verbose": True}).fit(X)
    assert "epoch" in capfd.readouterr().out


def test_keyboard_interrupt_stops_a_fit_cleanly(X):
    big = np.tile(X, (4, 1))
    est = RRRNMF(n_components=8, epochs=100_000, device="cpu", random_state=0)
    assert_interrupted(lambda: est.fit(big), 0.3)
    assert not hasattr(est, "model_")
    assert RRRNMF(**SMALL_NMF).fit(X).components_.shape == (6, 64)
