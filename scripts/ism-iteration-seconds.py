#!/usr/bin/env python3
"""Seconds per W* (ISM) iteration at the second layer (random features,
r = 400) on a Gaussian mixture written by `gradfree data mixture`.

    gradfree data mixture --out /tmp/mix5000 --items 5000
    python scripts/ism-iteration-seconds.py /tmp/mix5000 [--precision f64] [--iters 10]

Needs the Python package (pip install ./python). The tolerance is 0, so
every layer runs exactly --iters iterations.
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
a = ap.parse_args()
X = np.loadtxt(f"{a.prefix}_x.csv", delimiter=",")
y = np.loadtxt(f"{a.prefix}_y.csv", dtype=int)
est = gradfree.HSICClassifier(solver="ism", max_layers=a.layers, max_iter=a.iters, tol=0.0,
                              device="cpu", precision=a.precision, random_state=0)
t0 = time.perf_counter()
est.fit(X, y)
fit_s = time.perf_counter() - t0
for h in est.history_:
    print(json.dumps({"n": len(y), "layer": h["layer"], "width": h["width"],
                      "iterations": h["iterations"],
                      "s_per_iteration": h["iteration_seconds"] / max(h["iterations"], 1)}))
print(json.dumps({"n": len(y), "fit_s": fit_s, "gwms": est.gwms_, "train_acc": est.score(X, y)}))
