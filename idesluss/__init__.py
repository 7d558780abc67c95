"""Idéslussen matcher: command line, settings and the service functions shared with the API."""

import os

# numpy's OpenBLAS pool and torch's OpenMP pool both busy-wait; on a 2-core machine they starve each
# other (measured: query p95 136 ms with both, 34 ms with one BLAS thread). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
