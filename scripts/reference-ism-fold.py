#!/usr/bin/env python3
"""One fold of the public reference W* (endsley/Neural_Indicator_Kernel_ISM,
its `kernelNet` from NIK.py) on fold files in the reference's layout, such
as those of `gradfree data mixture --folds K`: layers, train and test
accuracy, fit seconds, and per layer the ISM iterations and seconds.

    git clone https://github.com/endsley/Neural_Indicator_Kernel_ISM REF
    gradfree data mixture --out /tmp/mixf/mix5000 --items 5000 --folds 10
    OPENBLAS_NUM_THREADS=1 python scripts/reference-ism-fold.py REF /tmp/mixf mix5000 1

As the reference's run_10_fold does, training and test rows are each
standardized with their own statistics. Imports its network code declares
but this path never calls (torch, matplotlib, PIL, cv2, pyrfm, autograd)
are stubbed; the per-layer debug records, which run after each layer's
clock stops and use scikit-learn APIs that have since been removed, are
replaced by a count of ISM iterations. It runs inside REF (the network
writes REF/results).
"""
import json
import os
import sys
import time
import types
from unittest import mock

import numpy as np

ref, data_dir, name, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


class Stub(types.ModuleType):
    """A module whose every attribute is a mock."""

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return mock.MagicMock()


for m in ["torch", "torch.autograd", "torch.nn", "torch.nn.functional", "torch.utils",
          "torch.utils.data", "matplotlib", "matplotlib.pyplot", "PIL", "PIL.Image", "cv2",
          "mpl_toolkits", "mpl_toolkits.mplot3d", "pyrfm", "pyrfm.random_feature"]:
    sys.modules[m] = Stub(m)
# scipy asks whether arrays are torch tensors.
sys.modules["torch"].Tensor = type("Tensor", (), {})
autograd = types.ModuleType("autograd")
autograd.numpy = np
sys.modules["autograd"] = autograd
sys.modules["autograd.numpy"] = np
# scikit-learn ≥ 1.4 names OneHotEncoder's `sparse` `sparse_output`.
import sklearn.preprocessing as skp  # noqa: E402

_OneHot = skp.OneHotEncoder
skp.OneHotEncoder = lambda *a, sparse=None, **kw: _OneHot(
    *a, **({"sparse_output": sparse} if sparse is not None else {}), **kw)
sys.path.insert(0, ref)
os.chdir(ref)
# NIK.py's own imports and kernelNet, without its __main__ experiment.
src = open("NIK.py").read()
cut = src.index("if __name__", src.index("class kernelNet"))
ns = {"__name__": "__main__"}
exec(compile(src[:cut], "NIK.py", "exec"), ns)
import src.libs.ISM_supervised_DR.src.kernels.gaussian as gk  # noqa: E402
import src.networks.ISMLP as ismlp  # noqa: E402

calls = {"phi": 0}
_get_phi = gk.gaussian.get_Φ


def counted(self, W):
    calls["phi"] += 1
    return _get_phi(self, W)


gk.gaussian.get_Φ = counted
layers = []


def record(net, new_layer):
    layers.append({"iterations": calls["phi"], "seconds": net.db["ΔTime"],
                   "silhouette": float(net.db["ȿ"])})
    calls["phi"] = 0


# Python folds ℓ and ℹ to l and i in identifiers.
ismlp.record_each_l = record
ismlp.print_each_l_i = lambda *a: None
ismlp.record_final_l = lambda *a: None
ismlp.print_final_l = lambda *a: None

from sklearn.preprocessing import scale  # noqa: E402


def fold_file(suffix):
    return os.path.join(data_dir, name, f"{name}_{k}{suffix}.csv")


X = np.loadtxt(fold_file(""), delimiter=",")
Y = np.loadtxt(fold_file("_label"), dtype=int)
Xt = np.loadtxt(fold_file("_test"), delimiter=",")
Yt = np.loadtxt(fold_file("_label_test"), dtype=int)
X, Xt = scale(X), scale(Xt)
t0 = time.perf_counter()
net = ns["kernelNet"](X, Y, f"{name}_fold{k}")
net.train()
fit_s = time.perf_counter() - t0
test_acc = float(np.mean(net.fit(Xt).ravel() == Yt.ravel()))
train_acc = float(np.mean(net.fit(X).ravel() == Y.ravel()))
print(json.dumps({"program": "reference", "n_train": len(Y), "fold": k,
                  "layers": len(net.db["network"].ℓ_目), "train_acc": train_acc,
                  "test_acc": test_acc, "fit_s": fit_s, "per_layer": layers}))
