"""Backends: interchangeable implementations of one kernel contract.

A backend is a module exposing the functions below. The public API (``fastwlr.score``, ``topk``,
the estimators) validates input once in ``fastwlr._validation`` and then calls a backend, so a
backend may assume what validation guarantees and nothing more:

* dense ``X``: 2-D, C-contiguous, float32 or float64, finite values are NOT guaranteed
  (NaN features are allowed through to scoring; training input is checked finite);
* CSR: ``data`` float32/float64, ``indices`` and ``indptr`` of one integer dtype (int32 or int64),
  ``indptr`` non-decreasing from 0 to nnz, every index in ``[0, n_features)``; all contiguous;
* ``coef``: float64, C-contiguous, finite, length ``n_features``; ``intercept``: a finite Python float;
* ``offsets``: int64, non-decreasing, from 0 to ``n_rows``; ``k >= 1``;
* ``out``: a writable contiguous 1-D array of the right length and dtype;
* ``n_threads``: an int >= 1 (resolved by ``fastwlr._config.resolve_n_threads``).
Results must not depend on ``n_threads`` (each row's dot product is summed in one fixed order).

Scoring (``output`` is one of ``"log_odds"``, ``"odds"``, ``"proba"``; see ``fastwlr._math``):
    score_dense(X, coef, intercept, output, out, n_threads) -> None
    score_csr(data, indices, indptr, coef, intercept, output, out, n_threads) -> None
    (Optional: a backend with ``SCORE_COUNTS_NONFINITE = True`` returns the number of rows whose
    log-odds were inf or NaN; 0 proves X holds no inf, so ``fastwlr.score`` then skips its separate
    pass looking for one. Validation hands such a backend X unchecked for inf, never for NaN/bounds.)
Top-k (issue 4):
    topk(scores, offsets, k, n_threads) -> (indices int64 (G, k), values (G, k) of scores.dtype)
    score_topk_dense(X, coef, intercept, offsets, k, output, exclude, n_threads) -> (indices, values)
    score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, output, exclude, n_threads)
    Spec: ``backends/reference/topk.py``. Per group the k best by (higher value, then lower index),
    best first, padded with index -1 / value -inf; -inf is a real score. ``scores`` are float32 or
    float64 (values keep that dtype); NaN scores -> ValueError naming the index. Fused: rank by the
    float64 log-odds, transform only the winners (values dtype: ``scoring.result_dtype``);
    ``exclude`` is None or a contiguous bool array of length n_rows (excluded rows are not scored);
    after the pass call ``_validation.check_nonfinite_log_odds(X or data, lowest NaN row or -1,
    any inf log-odds)``, which raises for inf features and names the NaN row.
Objective (DESIGN.md section 1; the intercept is not regularised):
    objective_grad_dense(X, y, sample_weight, coef, intercept, l2, n_threads)
        -> (loss float, grad_coef float64 (d,), grad_intercept float)
    objective_grad_csr(data, indices, indptr, n_features, y, sample_weight, coef, intercept, l2, n_threads)
SGD epochs (issue 3): see ``fastwlr._sgd`` (module docstring) for the exact step, the state
(``SGDState``: float64 arrays + a float64 ``scalars`` vector, mutated in place) and the options
(``EpochParams``: plain numbers and codes); one epoch over a given int64 row ``order``:
    sgd_epoch_dense(X, y, sample_weight, order, state, params) -> (loss_sum float, diverged_at int)
    sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params) -> (loss_sum, diverged_at)
    (diverged_at = -1, or the position in ``order`` where the log-odds became non-finite)

Backends are listed in ``fastwlr._config.BACKENDS``; adding one means adding its name there.
"""
