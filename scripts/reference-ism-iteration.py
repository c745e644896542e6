#!/usr/bin/env python3
"""Seconds per ISM iteration of the public reference code (W*,
endsley/Neural_Indicator_Kernel_ISM), on the same problem that
`scripts/ism-iteration-seconds.py` times for gradfree: the second layer's
400 random features of a Gaussian mixture, with gradfree's σ and width for
that layer.

    git clone https://github.com/endsley/Neural_Indicator_Kernel_ISM REF
    gradfree data mixture --out /tmp/mix10000 --items 10000
    OPENBLAS_NUM_THREADS=1 python scripts/reference-ism-iteration.py REF /tmp/mix10000 --iters 5

The reference's own modules run unchanged (`kernels/gaussian.py` get_Φ,
`optimizer/ism.py` run, `tools/kernel_lib.py` eig_solver). Imports it
declares but these paths never call (autograd, torch, pyrfm: the last only
past 16,000 items) are stubbed. Its stopping rule is switched off so that
exactly --iters iterations run; gradfree's side is timed the same way
(tol 0). Needs the Python package (pip install ./python).
"""

import argparse
import json
import sys
import time
import types

import numpy as np

import gradfree

ap = argparse.ArgumentParser()
ap.add_argument("reference", help="checkout of endsley/Neural_Indicator_Kernel_ISM")
ap.add_argument("prefix", help="PREFIX of PREFIX_x.csv and PREFIX_y.csv")
ap.add_argument("--iters", type=int, default=5)
a = ap.parse_args()

# Unused imports of the reference's kernel_lib and gaussian.py.
autograd = types.ModuleType("autograd")
autograd.numpy = np
sys.modules.update({"autograd": autograd, "autograd.numpy": np,
                    "torch": types.ModuleType("torch"),
                    "pyrfm": types.ModuleType("pyrfm"),
                    "pyrfm.random_feature": types.ModuleType("pyrfm.random_feature")})
# The outer packages' __init__ files import plotting and the networks;
# only the ISM library's own package is initialised.
for name, sub in [("src", "src"), ("src.libs", "src/libs"),
                  ("src.libs.ISM_supervised_DR", "src/libs/ISM_supervised_DR")]:
    pkg = types.ModuleType(name)
    pkg.__path__ = [f"{a.reference}/{sub}"]
    sys.modules[name] = pkg
from src.libs.ISM_supervised_DR.src.kernels.gaussian import gaussian  # noqa: E402
from src.libs.ISM_supervised_DR.src.optimizer.ism import ism  # noqa: E402
from src.libs.ISM_supervised_DR.src.tools import kernel_lib as klib  # noqa: E402
from src.libs.ISM_supervised_DR.src.algorithms.linear_supv_dim_reduction import (  # noqa: E402
    linear_supv_dim_reduction)

X = np.loadtxt(f"{a.prefix}_x.csv", delimiter=",")
y = np.loadtxt(f"{a.prefix}_y.csv", dtype=int)
n = len(y)
# Layer 2's input (layer 1's random features), σ and width, from gradfree.
one = gradfree.HSICClassifier(solver="ism", max_layers=1, device="cpu", random_state=0).fit(X, y)
Z = one.transform(X)
two = gradfree.HSICClassifier(solver="ism", max_layers=2, max_iter=1, device="cpu",
                              random_state=0).fit(X, y)
layer = two.history_[1]
sigma, q = layer["sigma"], layer["width"]

Y = np.eye(y.max() + 1)[y]
db = {"X": Z, "Y": Y, "σ": sigma, "q": q, "d": Z.shape[1], "convergence_method": "use_λ"}
db["kernel"] = gaussian(db)
linear_supv_dim_reduction(db)  # sets db['Γ']
W0, _ = klib.eig_solver(db["kernel"].get_Φ0(), q)
opt = ism(db)
opt.conv_threshold = -1.0  # never converge: exactly --iters iterations
t0 = time.perf_counter()
opt.run(W0, max_rep=a.iters)
s = (time.perf_counter() - t0) / a.iters
print(json.dumps({"n": n, "program": "reference", "layer": 2, "width": q, "sigma": sigma,
                  "features": Z.shape[1], "iterations": a.iters, "s_per_iteration": s}))
