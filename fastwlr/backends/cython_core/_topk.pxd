# What other modules of the core call in _topk: one request's fast path (DenseScorer.topk in
# _scoring.pyx serves a prepared model through it).
cdef object request_topk(X, k, const double* w, Py_ssize_t d, coef32, double b, int output, threads_for,
                         call_ended)
