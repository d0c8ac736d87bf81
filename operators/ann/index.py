"""`AnnIndex`: an hnswlib inner-product index behind string ids, tombstones, rebuilds and a byte format.

The object owns everything a restore needs: the id ↔ label mapping, a float32 copy of every live
vector (so `rebuild` and the exact fallback need nothing else) and the hnswlib graph itself.

Labels: every upsert of an id that is not live takes the next unused label; an update of a live id
keeps its label (hnswlib moves the point in place). `remove` tombstones the label with
``mark_deleted``; the label is never reused, so tombstones only go away with `rebuild`, which
re-inserts the live vectors under labels ``0..n-1`` in the order of their old labels.

Scores are inner products recomputed in float32 from the stored vectors (hnswlib's ``1 - ip``
distance is only used to pick candidates), so the same vector gives the same score on every path.

Determinism: a fixed ``random_seed`` and single-threaded inserts give the same graph for the same
sequence of calls; ``num_threads > 1`` makes insertion order (and so the graph) non-deterministic.
After `from_bytes` hnswlib's level generator restarts from its default seed, so later inserts may
differ from those on the object that was saved.

Byte format, version 1 (little endian; tag ``b"A"``, listed in `state_schemas.codec.TAGS`)::

    offset  size          field
    0       1             format tag, u8: ord("A")
    1       2             format version, u16 = 1
    3       4             dim, u32
    7       4             M, u32
    11      4             ef_construction, u32
    15      4             ef_search, u32
    19      4             random_seed, u32
    23      4             num_threads, u32
    27      8             mutation version counter, u64
    35      8             capacity (hnswlib max_elements), u64
    43      8             next_label (labels 0..next_label-1 have been used), u64
    51      8             n_live, u64
    59      8             n_tomb, u64
    67      8             hnsw_len: length of the hnswlib blob, u64
    75      8*n_live      live labels, u64, ascending
    ...     4*n_live      utf-8 length of each live id, u32, same order
    ...     sum(lengths)  the live ids, utf-8, concatenated
    ...     4*dim*n_live  the live vectors, float32, row-major, same order
    ...     8*n_tomb      tombstoned labels, u64, ascending
    ...     hnsw_len      hnswlib's own ``save_index`` file (graph, stored vectors, deletion marks)

Every label below ``next_label`` is either live or tombstoned; `from_bytes` checks this, the lengths
and the graph's element count, and raises `SchemaError` on a mismatch and `StateVersionError` on an
unknown version.
"""

from __future__ import annotations

import importlib
import os
import struct
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Final, Protocol, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from state_schemas.errors import SchemaError, StateVersionError


def _import_hnswlib() -> ModuleType:
    """Import hnswlib from a fresh Python thread, once per interpreter.

    Why: in PyFlink's thread mode pemja gives every chained Python operator its own thread state,
    several per task thread, and only the first is what ``PyGILState_Ensure`` finds for that thread.
    pybind11's module init calls ``PyGILState_Ensure``; run from any other thread state, it waits
    for the GIL its own thread already holds, and the job hangs at start (gdb: ``PyInit_hnswlib`` →
    ``get_internals`` → ``PyGILState_Ensure`` → ``take_gil``). A thread started by `threading` owns
    exactly one thread state, so the init is safe there; later imports hit ``sys.modules``.
    """
    loaded = sys.modules.get("hnswlib")
    if loaded is not None:
        return loaded
    outcome: dict[str, object] = {}

    def load() -> None:
        try:
            outcome["module"] = importlib.import_module("hnswlib")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    loader = threading.Thread(target=load, name="liverec-hnswlib-import", daemon=True)
    loader.start()
    loader.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["module"]  # type: ignore[return-value]


hnswlib = _import_hnswlib()


class _HnswIndex(Protocol):
    """The part of ``hnswlib.Index`` this module uses (hnswlib ships no type information)."""

    def init_index(self, max_elements: int, M: int = ..., ef_construction: int = ...,  # noqa: N803
                   random_seed: int = ...) -> None: ...
    def set_ef(self, ef: int) -> None: ...
    def resize_index(self, new_size: int) -> None: ...
    def add_items(self, data: ArrayLike, ids: ArrayLike | None = ..., num_threads: int = ...) -> None: ...
    def mark_deleted(self, label: int) -> None: ...
    def knn_query(self, data: ArrayLike, k: int = ..., num_threads: int = ...
                  ) -> tuple[NDArray[np.uint64], NDArray[np.float32]]: ...
    def save_index(self, path_to_index: str) -> None: ...
    def load_index(self, path_to_index: str, max_elements: int = ...) -> None: ...
    def get_current_count(self) -> int: ...


TAG: Final = ord("A")
FORMAT_VERSION: Final = 1
_HEAD: Final = struct.Struct("<BHIIIIIIQQQQQQ")


class AnnIndex:
    """Approximate top-k by inner product over float32 vectors of one dimension, keyed by string id.

    ``num_threads`` is the default for `upsert_many` and `rebuild`; the job calls from its own thread,
    so it defaults to 1. ``initial_capacity`` is the first hnswlib ``max_elements``; it doubles when full.
    """

    def __init__(
        self,
        dim: int,
        *,
        M: int = 16,  # noqa: N803 - hnswlib's name for the graph degree
        ef_construction: int = 100,
        ef_search: int = 50,
        random_seed: int = 42,
        initial_capacity: int = 1024,
        num_threads: int = 1,
    ) -> None:
        if dim <= 0 or M <= 1 or ef_construction <= 0 or ef_search <= 0 or num_threads <= 0:
            msg = (
                f"AnnIndex(dim={dim}, M={M}, ef_construction={ef_construction}, ef_search={ef_search}, "
                f"num_threads={num_threads}): all must be positive (M at least 2)"
            )
            raise ValueError(msg)
        self.dim = int(dim)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.random_seed = int(random_seed)
        self.num_threads = int(num_threads)
        self.initial_capacity = max(1, int(initial_capacity))
        self.version = 0
        self.rebuilds = 0  # fresh graphs built (`replace_all`, `rebuild`) by this object: a metric, not state
        self._reset(self.initial_capacity)

    # -- state -----------------------------------------------------------------------------------

    def _reset(self, capacity: int) -> None:
        self._capacity = capacity
        self._hnsw = self._new_hnsw(capacity)
        self._vectors: NDArray[np.float32] = np.zeros((capacity, self.dim), dtype=np.float32)
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._tombstones: set[int] = set()
        self._next_label = 0

    def _new_hnsw(self, capacity: int) -> _HnswIndex:
        h: _HnswIndex = hnswlib.Index(space="ip", dim=self.dim)
        h.init_index(
            max_elements=capacity, M=self.M, ef_construction=self.ef_construction, random_seed=self.random_seed
        )
        h.set_ef(self.ef_search)
        self._ef = self.ef_search
        return h

    def _ensure_capacity(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        new_cap = max(needed, 2 * self._capacity)
        self._hnsw.resize_index(new_cap)
        grown = np.zeros((new_cap, self.dim), dtype=np.float32)
        grown[: self._next_label] = self._vectors[: self._next_label]
        self._vectors = grown
        self._capacity = new_cap

    def __len__(self) -> int:
        """Number of live items."""
        return len(self._label_of)

    def __contains__(self, item_id: object) -> bool:
        """Whether ``item_id`` is live."""
        return item_id in self._label_of

    @property
    def capacity(self) -> int:
        """Current hnswlib ``max_elements``."""
        return self._capacity

    @property
    def tombstones(self) -> int:
        """Removed items whose labels still sit in the graph (until the next `rebuild`)."""
        return len(self._tombstones)

    @property
    def deleted_fraction(self) -> float:
        """Tombstoned share of the elements in the graph (0.0 when empty)."""
        total = len(self._label_of) + len(self._tombstones)
        return len(self._tombstones) / total if total else 0.0

    def needs_rebuild(self, threshold: float = 0.2) -> bool:
        """Whether tombstones exceed ``threshold`` of the graph, the point where recall starts to suffer."""
        return self.deleted_fraction > threshold

    def vector(self, item_id: str) -> NDArray[np.float32]:
        """A copy of the stored vector of a live item (`KeyError` if it is not live)."""
        row: NDArray[np.float32] = self._vectors[self._label_of[item_id]]
        return row.copy()

    def live_ids(self) -> list[str]:
        """Live ids, in label order."""
        return [self._id_of[lb] for lb in sorted(self._id_of)]

    # -- mutations -------------------------------------------------------------------------------

    def _as_matrix(self, vectors: ArrayLike, n: int) -> NDArray[np.float32]:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1 and n == 1:
            arr = arr.reshape(1, -1)
        if arr.shape != (n, self.dim):
            msg = f"vectors have shape {arr.shape}, expected ({n}, {self.dim}): one row of dim {self.dim} per id"
            raise ValueError(msg)
        if not np.isfinite(arr).all():
            msg = "vectors contain NaN or infinity: drop or repair the update before indexing it"
            raise ValueError(msg)
        return arr

    def upsert_many(self, ids: Sequence[str], vectors: ArrayLike, *, num_threads: int | None = None) -> None:
        """Insert new ids and move existing ones, in one hnswlib ``add_items`` call.

        A repeated id within the batch keeps its last vector. Removed ids come back under a new label.
        """
        n = len(ids)
        if n == 0:
            return
        arr = self._as_matrix(vectors, n)
        last: dict[str, int] = {}
        for row, item_id in enumerate(ids):
            if not isinstance(item_id, str):
                msg = f"item id {item_id!r} is a {type(item_id).__name__}, expected str"
                raise TypeError(msg)
            last[item_id] = row
        n_new = sum(1 for i in last if i not in self._label_of)
        self._ensure_capacity(self._next_label + n_new)
        labels = np.empty(len(last), dtype=np.uint64)
        rows = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        for j, item_id in enumerate(last):
            label = self._label_of.get(item_id)
            if label is None:
                label = self._next_label
                self._next_label += 1
                self._label_of[item_id] = label
                self._id_of[label] = item_id
            labels[j] = label
        data = np.ascontiguousarray(arr[rows])
        self._vectors[labels.astype(np.int64)] = data
        self._hnsw.add_items(data, labels, num_threads=num_threads or self.num_threads)
        self.version += 1

    def upsert(self, item_id: str, vector: ArrayLike) -> None:
        """Insert or move one item (a batch of one)."""
        self.upsert_many([item_id], cast(ArrayLike, [vector]))

    def remove(self, ids: Iterable[str]) -> int:
        """Tombstone the live items among ``ids``; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for item_id in ids:
            label = self._label_of.pop(item_id, None)
            if label is None:
                continue
            del self._id_of[label]
            self._hnsw.mark_deleted(label)
            self._tombstones.add(label)
            removed += 1
        if removed:
            self.version += 1
        return removed

    def replace_all(self, ids: Sequence[str], vectors: ArrayLike, *, num_threads: int | None = None) -> None:
        """A fresh graph holding exactly ``ids`` with ``vectors``, built in one ``add_items`` call.

        Why: hnswlib moves an existing label's vector at ~1,000/s here, but builds a fresh graph at
        ~15,000 items/s, so when a good part of the index changed, rebuilding beats moving.
        """
        n = len(ids)
        arr = self._as_matrix(vectors, n) if n else np.zeros((0, self.dim), np.float32)
        if len(set(ids)) != n:
            msg = "replace_all: ids must be distinct"
            raise ValueError(msg)
        self._reset(max(self.initial_capacity, n))
        if n:
            self._vectors[:n] = arr
            self._label_of = {item_id: i for i, item_id in enumerate(ids)}
            self._id_of = dict(enumerate(ids))
            self._next_label = n
            self._hnsw.add_items(np.ascontiguousarray(arr), np.arange(n, dtype=np.uint64),
                                 num_threads=num_threads or self.num_threads)
        self.version += 1
        self.rebuilds += 1

    def rebuild(self, *, num_threads: int | None = None) -> None:
        """A fresh graph from the live vectors only: tombstones gone, labels compacted to ``0..n-1``."""
        order = sorted(self._id_of)
        ids = [self._id_of[lb] for lb in order]
        vecs = self._vectors[np.asarray(order, dtype=np.int64)] if order else np.zeros((0, self.dim), np.float32)
        self._reset(max(self.initial_capacity, len(ids)))
        if ids:
            labels = np.arange(len(ids), dtype=np.uint64)
            self._vectors[: len(ids)] = vecs
            self._label_of = {item_id: i for i, item_id in enumerate(ids)}
            self._id_of = dict(enumerate(ids))
            self._next_label = len(ids)
            self._hnsw.add_items(vecs, labels, num_threads=num_threads or self.num_threads)
        self.version += 1
        self.rebuilds += 1

    # -- queries ---------------------------------------------------------------------------------

    def query(self, vector: ArrayLike, k: int, exclude: set[str] | None = None) -> list[tuple[str, float]]:
        """Up to ``k`` live (id, inner product) pairs, best first, none of them in ``exclude``.

        Fewer than ``k`` only when fewer live items remain outside ``exclude``. Over-fetches by the
        number of excluded live ids; if the graph cannot return that many (heavy tombstoning), the
        answer comes from the exact scan instead.
        """
        q = self._as_matrix(vector, 1)
        excluded = [e for e in exclude if e in self._label_of] if exclude else []
        want = min(k + len(excluded), len(self._label_of))
        if k <= 0 or want - len(excluded) <= 0:
            return []
        ef = max(self.ef_search, want)
        if ef != self._ef:
            self._hnsw.set_ef(ef)
            self._ef = ef
        try:
            labels, _ = self._hnsw.knn_query(q, k=want, num_threads=1)
        except RuntimeError:
            return self.query_exact(vector, k, exclude)
        cand = labels[0].astype(np.int64)
        scores = self._vectors[cand] @ q[0]
        skip = set(excluded)
        out = [(self._id_of[int(lb)], float(s)) for lb, s in zip(cand, scores, strict=True)]
        out = [p for p in out if p[0] not in skip]
        out.sort(key=lambda p: -p[1])
        return out[:k]

    def query_exact(self, vector: ArrayLike, k: int, exclude: set[str] | None = None) -> list[tuple[str, float]]:
        """The exact answer of `query`, by a scan over the live vectors (the reference and the fallback)."""
        q = self._as_matrix(vector, 1)[0]
        if k <= 0 or not self._id_of:
            return []
        labels = np.fromiter(self._id_of, dtype=np.int64, count=len(self._id_of))
        if exclude:
            labels = labels[[self._id_of[int(lb)] not in exclude for lb in labels]]
        scores = self._vectors[labels] @ q
        k = min(k, len(labels))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._id_of[int(labels[i])], float(scores[i])) for i in top]

    # -- bytes -----------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole index in the versioned format documented at the top of this module."""
        live = np.asarray(sorted(self._id_of), dtype=np.uint64)
        encoded = [self._id_of[int(lb)].encode("utf-8") for lb in live]
        lengths = np.asarray([len(b) for b in encoded], dtype="<u4")
        vecs = self._vectors[live.astype(np.int64)].astype("<f4", copy=False)
        tomb = np.asarray(sorted(self._tombstones), dtype="<u8")
        hnsw = self._hnsw_bytes()
        head = _HEAD.pack(
            TAG, FORMAT_VERSION, self.dim, self.M, self.ef_construction, self.ef_search, self.random_seed,
            self.num_threads, self.version, self._capacity, self._next_label, len(live), len(tomb), len(hnsw),
        )  # fmt: skip
        return b"".join(
            [head, live.astype("<u8").tobytes(), lengths.tobytes(), *encoded, vecs.tobytes(), tomb.tobytes(), hnsw]
        )

    def _hnsw_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory(prefix="liverec-ann-") as d:
            path = os.path.join(d, "index.bin")
            self._hnsw.save_index(path)
            with open(path, "rb") as f:
                return f.read()

    @classmethod
    def from_bytes(cls, data: bytes) -> AnnIndex:
        """An index equal to the one that wrote ``data``: same ids, vectors, tombstones, graph and version."""
        data = bytes(data)
        if len(data) < 3:
            msg = f"ANN index blob of {len(data)} bytes is too short for its 3-byte header"
            raise SchemaError(msg)
        tag, version = struct.unpack_from("<BH", data)
        if tag != TAG:
            msg = f"ANN index blob has format tag {tag:#04x}, expected {TAG:#04x}: this is not an AnnIndex blob"
            raise SchemaError(msg)
        if version != FORMAT_VERSION:
            msg = (
                f"ANN index blob has format version {version} but this build reads only {FORMAT_VERSION}: "
                "deploy a build that knows it, or rebuild the index from the item vectors"
            )
            raise StateVersionError(msg)
        try:
            return cls._decode_v1(data)
        except (struct.error, ValueError, UnicodeDecodeError, RuntimeError, KeyError) as exc:
            msg = f"ANN index blob v{version} of {len(data)} bytes is corrupt: {exc}"
            raise SchemaError(msg) from exc

    @classmethod
    def _decode_v1(cls, data: bytes) -> AnnIndex:
        (_, _, dim, m, efc, efs, seed, threads, version, capacity, next_label, n_live, n_tomb, hnsw_len) = (
            _HEAD.unpack_from(data)
        )
        off = _HEAD.size
        live = np.frombuffer(data, dtype="<u8", count=n_live, offset=off).astype(np.int64)
        off += 8 * n_live
        lengths = np.frombuffer(data, dtype="<u4", count=n_live, offset=off)
        off += 4 * n_live
        ids = []
        for ln in lengths.tolist():
            ids.append(data[off : off + ln].decode("utf-8"))
            off += ln
        vecs = np.frombuffer(data, dtype="<f4", count=n_live * dim, offset=off).reshape(n_live, dim)
        off += 4 * dim * n_live
        tomb = np.frombuffer(data, dtype="<u8", count=n_tomb, offset=off).astype(np.int64)
        off += 8 * n_tomb
        if off + hnsw_len != len(data):
            msg = f"body ends at {off + hnsw_len}, blob has {len(data)} bytes"
            raise ValueError(msg)
        labels = set(live.tolist())
        tombs = set(tomb.tolist())
        partition = not (labels & tombs) and labels | tombs == set(range(next_label))
        if len(labels) != n_live or len(set(ids)) != n_live or not partition:
            msg = "live labels, ids and tombstones do not partition 0..next_label-1"
            raise ValueError(msg)
        if capacity < next_label:
            msg = f"capacity {capacity} < next_label {next_label}"
            raise ValueError(msg)

        self = cls(dim, M=m, ef_construction=efc, ef_search=efs, random_seed=seed, num_threads=threads)
        self._capacity = capacity
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._vectors[live] = vecs
        self._label_of = dict(zip(ids, live.tolist(), strict=True))
        self._id_of = dict(zip(live.tolist(), ids, strict=True))
        self._tombstones = tombs
        self._next_label = next_label
        self.version = version
        self._hnsw = hnswlib.Index(space="ip", dim=dim)
        with tempfile.TemporaryDirectory(prefix="liverec-ann-") as d:
            path = os.path.join(d, "index.bin")
            with open(path, "wb") as f:
                f.write(data[off:])
            self._hnsw.load_index(path, max_elements=capacity)
        if self._hnsw.get_current_count() != next_label:
            msg = f"hnswlib graph holds {self._hnsw.get_current_count()} elements, expected {next_label}"
            raise ValueError(msg)
        self._hnsw.set_ef(efs)
        self._ef = efs
        return self
