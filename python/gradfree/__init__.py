"""gradfree: neural networks trained without gradients, as scikit-learn
estimators over the gradfree engine (Rust; wgpu compute shaders or native
CPU code).

- :class:`RRRClassifier`: relaxed-reflect-reflect classifier (Elser).
- :class:`HSICClassifier`: layer-wise HSIC network, W_s or W* (Wu et al.).
- :class:`RRRNMF`: non-negative matrix factorization by RRR.
- :class:`StarNetDecoder`: StarNet decoder trained layer by layer (Zadeh et al.).
- :class:`RRRAutoencoder`: RRR autoencoder with binary codes and its generator.

Every fitted estimator has ``gwms_``, ``seconds_``, ``joules_`` (None
without an energy sensor) and ``history_``, and ``save``/``load`` the
CLI's ``model.safetensors``.
"""

from ._core import __version__, devices
from .classifiers import HSICClassifier, RRRClassifier
from .decoders import RRRNMF, RRRAutoencoder, StarNetDecoder

__all__ = [
    "HSICClassifier",
    "RRRAutoencoder",
    "RRRClassifier",
    "RRRNMF",
    "StarNetDecoder",
    "__version__",
    "devices",
]
