"""Top-k over candidate scores with a seen set excluded."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def top_k(scores: ArrayLike, k: int, exclude: ArrayLike | None = None) -> NDArray[np.int64]:
    """Indices of the `k` best finite scores, best first, never an index in `exclude`.

    argpartition keeps this O(n) per query (the sort is over `k` items only). Ties are broken by
    the lower index so results are reproducible; NaN and -inf scores are never returned.

    >>> top_k([0.1, 0.9, 0.5, 0.9], 2, exclude=[1])
    array([3, 2])
    """
    s = np.array(scores, dtype=np.float64)
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        s[ex[(ex >= 0) & (ex < s.size)]] = -np.inf
    s[np.isnan(s)] = -np.inf
    valid = int(np.count_nonzero(s > -np.inf))
    k = min(k, valid)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < s.size:
        # Take every index tied with the k-th best so the tie-break below sees all of them.
        kth = np.partition(s, s.size - k)[s.size - k]
        cand = np.flatnonzero(s >= kth)
    else:
        cand = np.arange(s.size)
    order: NDArray[np.intp] = np.lexsort((cand, -s[cand]))  # by score desc, then index asc
    best: NDArray[np.signedinteger[Any]] = cand[order[:k]]
    return best.astype(np.int64)
