"""fastwlr: weighted logistic regression as a watch-time ranker.

Train weighted LR (positives weighted by watch time, negatives by 1), serve e^(w.x+b) as the
expected watch time, and pick each request's top-k, with a compiled core on CPU.
"""
from ._config import available_backends, get_backend  # noqa: F401
from ._config import set_backend, use_backend, show_config  # noqa: F401
from .scoring import Scorer, score  # noqa: F401
from .topk import topk, score_topk  # noqa: F401
from . import datasets  # noqa: F401  (fastwlr.datasets: generator with ground truth, real-data loaders)
from . import metrics  # noqa: F401  (fastwlr.metrics: log-loss, AUC, weighted per-user loss, NDCG, calibration)
from .estimators import WatchTimeRanker, WeightedLogisticRegression  # noqa: F401
from ._io import load  # noqa: F401

from ._version import __version__  # noqa: F401

__all__ = ["score", "Scorer", "topk", "score_topk", "available_backends", "get_backend", "__version__",
           "WeightedLogisticRegression", "WatchTimeRanker", "load",
           "set_backend", "use_backend", "show_config"]
