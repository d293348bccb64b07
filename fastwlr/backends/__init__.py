"""Backends: interchangeable implementations of one kernel contract (docs/kernels.md).

Each backend is a leaf: it imports numpy, its own modules and the shared names of
``fastwlr.backends._contract``, never the layers above. The only caller of a backend is the
adapter ``fastwlr._kernels``. Backends are listed in ``fastwlr._config.BACKENDS``.
"""
