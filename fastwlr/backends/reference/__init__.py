"""The numpy reference backend: float64, simple, obviously correct. It is the oracle every
compiled kernel is tested against, and the baseline every benchmark compares with."""
from .scoring import log_odds_dense, log_odds_csr, score_dense, score_csr  # noqa: F401
from .objective import objective_grad_dense, objective_grad_csr  # noqa: F401
from .sgd import sgd_epoch_dense, sgd_epoch_csr  # noqa: F401
from .topk import topk, score_topk_dense, score_topk_csr  # noqa: F401

name = "reference"
