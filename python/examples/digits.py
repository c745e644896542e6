"""An RRR classifier and an HSIC network on scikit-learn's digits, next to
scikit-learn's MLPClassifier: test accuracy, seconds and GWMs (giga
weight-multiplies) of each.

    pip install ./python
    python python/examples/digits.py
"""

import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from gradfree import HSICClassifier, RRRClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)


def mlp_gwms(mlp, n_items):
    """Multiply-adds of MLPClassifier's training, counted as gradfree counts
    its SGD baseline: 3 per weight and item seen (forward, and backward for
    the deltas and the gradient)."""
    weights = sum(w.size for w in mlp.coefs_)
    return 3e-9 * weights * n_items * mlp.n_iter_


rows = []
for name, est in [
    ("RRRClassifier()", RRRClassifier(random_state=0)),
    ("HSICClassifier()", HSICClassifier(random_state=0)),
    ("MLPClassifier(20)", MLPClassifier(hidden_layer_sizes=(20,), max_iter=500, random_state=0)),
]:
    t0 = time.perf_counter()
    est.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    gwms = est.gwms_ if hasattr(est, "gwms_") else mlp_gwms(est, len(X_train))
    rows.append((name, est.score(X_test, y_test), seconds, gwms))

print(f"{'estimator':<20} {'test accuracy':>13} {'seconds':>8} {'GWMs':>8}")
for name, acc, seconds, gwms in rows:
    print(f"{name:<20} {acc:>13.4f} {seconds:>8.2f} {gwms:>8.3f}")
