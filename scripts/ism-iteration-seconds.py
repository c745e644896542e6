#!/usr/bin/env python3
"""Seconds per W* (ISM) iteration at the second layer (random features,
r = 400) on a Gaussian mixture written by `gradfree data mixture`.

    gradfree data mixture --out /tmp/mix5000 --items 5000
    python scripts/ism-iteration-seconds.py /tmp/mix5000 [--precision f64] [--iters 10] [--eigen lobpcg]
    python scripts/ism-iteration-seconds.py /tmp/mix5000 --tol 0.01 --iters 200 --layers 10 --test 0.2

Needs the Python package (pip install ./python). With the default --tol 0
every layer runs exactly --iters iterations; --test holds out that
fraction of the rows (seeded) for a test accuracy.
"""

import argparse
import json
import time

import numpy as np

import gradfree

ap = argparse.ArgumentParser()
ap.add_argument("prefix", help="PREFIX of PREFIX_x.csv and PREFIX_y.csv")
ap.add_argument("--precision", default="f64", choices=["f32", "f64"])
ap.add_argument("--iters", type=int, default=10)
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--tol", type=float, default=0.0)
ap.add_argument("--eigen", default="dense", choices=["dense", "lobpcg"])
ap.add_argument("--test", type=float, default=0.0)
a = ap.parse_args()
X = np.loadtxt(f"{a.prefix}_x.csv", delimiter=",")
y = np.loadtxt(f"{a.prefix}_y.csv", dtype=int)
X_test, y_test = X[:0], y[:0]
if a.test > 0:
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(len(y) * (1 - a.test))
    X, X_test, y, y_test = X[order[:cut]], X[order[cut:]], y[order[:cut]], y[order[cut:]]
est = gradfree.HSICClassifier(solver="ism", max_layers=a.layers, max_iter=a.iters, tol=a.tol,
                              eigen=a.eigen, device="cpu", precision=a.precision, random_state=0)
t0 = time.perf_counter()
est.fit(X, y)
fit_s = time.perf_counter() - t0
for h in est.history_:
    print(json.dumps({"n": len(y), "layer": h["layer"], "width": h["width"],
                      "iterations": h["iterations"],
                      "s_per_iteration": h["iteration_seconds"] / max(h["iterations"], 1)}))
print(json.dumps({"n": len(y), "eigen": a.eigen, "fit_s": fit_s, "gwms": est.gwms_,
                  "train_acc": est.score(X, y),
                  "test_acc": est.score(X_test, y_test) if len(y_test) else None,
                  "layers": len(est.history_), "iterations": est.n_iter_}))
