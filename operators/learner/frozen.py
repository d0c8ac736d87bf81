"""An immutable, picklable mapping for weights inside frozen params.

Why not `types.MappingProxyType`: it cannot be pickled, and PyFlink pickles every function object
(with its params) to ship it to the Python workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class FrozenMap(Mapping[str, float]):
    """Read-only `str -> float` mapping; equal to and hashable like its items.

    >>> import pickle
    >>> m = FrozenMap({"view": 1.0})
    >>> pickle.loads(pickle.dumps(m)) == {"view": 1.0}
    True
    """

    __slots__ = ("_d",)

    def __init__(self, items: Mapping[str, float] | None = None) -> None:
        self._d: dict[str, float] = {str(k): float(v) for k, v in (items or {}).items()}

    def __getitem__(self, key: str) -> float:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        return hash(frozenset(self._d.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[str, float]]]:
        return (FrozenMap, (dict(self._d),))

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenMap:
        return self
