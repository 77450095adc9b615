"""Row-blocked views of the data that the EM loop and the initialisers iterate over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..numerics.finite import NonFiniteError
from ..options import CACHES
from .missing import add, first_found, first_row, omit_missing_rows, row_summary
from .nonfinite import locate_nonfinite
from .reduction import SPLIT_EVERY, dask_map_reduce, numpy_map_reduce

NUMPY_BLOCK_ROWS = 65536


@dataclass
class Blocks:
    """Data split into row blocks, with one ``map_reduce`` = one pass over the data.

    Attributes
    ----------
    X : ndarray or dask.array.Array
        Rows chunked, features in one chunk.
    sample_weight : same kind as ``X`` (1-D) or None
    blocks : list of (block_index, row_start)
        Non-empty row blocks.
    is_dask : bool
    omit_missing : bool
        Rows holding NaN weigh nothing in every pass (``missing="omit"``).
    leaves : list of tuple of int, optional
        For data persisted packed (:func:`pack_plan`): the row counts of the input's
        own non-empty chunks inside each block. Every pass still visits those chunks,
        one leaf of the reduction tree each, with the arithmetic of a kernel call each
        (the E-step makes one call over a run of them), so the results keep the bits
        of the input's chunking.
    source_chunks : tuple of int, optional
        The input's row chunks, when the blocks were packed (outputs get them back).
    plans : dict
        What out-of-core passes read, built by the first pass and reused by the others.
    """

    X: object
    sample_weight: object
    blocks: list
    is_dask: bool
    split_every: int = SPLIT_EVERY
    omit_missing: bool = False
    leaves: list | None = None
    source_chunks: tuple | None = None
    plans: dict = field(default_factory=dict, repr=False, compare=False)

    def _summary(self) -> np.ndarray:
        """``[complete rows, their total weight, those of positive weight]`` (one pass,
        once)."""
        if getattr(self, "_summary_cache", None) is None:
            self._summary_cache = self.map_reduce(row_summary, add)
        return self._summary_cache

    def n_omitted(self) -> int:
        """Rows left out for missing values (0 unless ``omit_missing``)."""
        return self.n_samples - int(self._summary()[0]) if self.omit_missing else 0

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def total_weight(self) -> float:
        """Sum of sample weights (``n_samples`` when unweighted)."""
        if self.omit_missing:
            return float(self._summary()[1])
        if self.sample_weight is None:
            return float(self.n_samples)
        total = self.sample_weight.sum()
        return float(total.compute() if self.is_dask else total)

    def n_positive_weight_rows(self) -> int:
        """Rows that carry weight (all rows when unweighted)."""
        if self.omit_missing:
            return int(self._summary()[2])
        if self.sample_weight is None:
            return self.n_samples
        count = (self.sample_weight > 0).sum()
        return int(count.compute() if self.is_dask else count)

    def first_row(self) -> np.ndarray:
        """The first row as float64 (reads one block; the first complete row when
        omitting missing values)."""
        if self.omit_missing:
            return self.map_reduce(first_row, first_found)
        row = self.X[self.blocks[0][1]]
        return np.asarray(row.compute() if self.is_dask else row, dtype=np.float64)

    def map_reduce(self, fn: Callable, combine: Callable, *args):
        """One pass: ``fn(X_block, w_block, row_start, *args)`` per block, tree-merged."""
        run = (partial(dask_map_reduce, leaves=self.leaves, plans=self.plans)
               if self.is_dask else numpy_map_reduce)
        if self.omit_missing:  # the kernels see complete rows only; the tree is unchanged
            fn, args = omit_missing_rows, (fn, *args)
        try:
            return run(self.X, self.sample_weight, self.blocks, fn, combine, args,
                       self.split_every)
        except NonFiniteError as e:
            raise self.explain(e) from None

    def explain(self, error: BaseException) -> BaseException:
        """``error``, or for non-finite values found in one dask block, the error
        counting them over the whole input (one more pass, on this failure only)."""
        if isinstance(error, NonFiniteError) and error.span and self.is_dask:
            return locate_nonfinite(self.X) or error
        return error


def numpy_blocks(X: np.ndarray, sample_weight=None, block_rows: int = NUMPY_BLOCK_ROWS,
                 omit_missing: bool = False) -> Blocks:
    """Blocks over an in-memory array."""
    starts = list(range(0, X.shape[0], block_rows))
    return Blocks(X, sample_weight, list(enumerate(starts)), is_dask=False,
                  omit_missing=omit_missing)


def _cluster_memory() -> float:
    """Memory the active scheduler's workers may use, or a quarter of this machine's."""
    try:
        from distributed import get_client

        info = get_client().scheduler_info()
        limits = [ws.get("memory_limit") or 0 for ws in info["workers"].values()]
        if sum(limits):
            return 0.5 * sum(limits)
    except (ImportError, ValueError):
        pass
    import psutil

    return 0.25 * psutil.virtual_memory().total


def one_feature_chunk(X):
    """The dask array with all features in one chunk (rows keep their chunks)."""
    return X if X.numblocks[1] == 1 else X.rechunk({1: -1})


def should_persist(X, cache: str) -> bool:
    """Whether ``cache`` asks to keep ``X`` in cluster memory (``auto``: if it fits)."""
    return cache == "memory" or (cache == "auto" and X.nbytes <= _cluster_memory())


PACK_BYTES = 16 << 20
"""Blocks that small row chunks are packed into when distgmm persists them."""
PACK_BLOCKS_PER_THREAD = 4


def pack_plan(chunks: tuple, row_bytes: int, threads: int) -> list[list[int]] | None:
    """Consecutive row chunks grouped into blocks of at most ``PACK_BYTES`` (and at
    least ``PACK_BLOCKS_PER_THREAD`` blocks per worker thread), or ``None`` when that
    would not at least halve the number of chunks.

    Persisted 500-row chunks cost a pass ~0.1 s more than the same rows in 10,000-row
    chunks on two workers: the scheduler places them round-robin, so a worker's task
    has hundreds of dependencies and can fold none of its partials, which travel to
    the driver one by one.
    """
    total = sum(chunks) * row_bytes
    target = min(PACK_BYTES, total / max(1, PACK_BLOCKS_PER_THREAD * threads))
    groups, current, size = [], [], 0
    for i, n in enumerate(chunks):
        if current and size + n * row_bytes > target:
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += n * row_bytes
    if current:
        groups.append(current)
    return groups if 2 * len(groups) <= len(chunks) else None


def _persist_packed(X, sample_weight, plan: list[list[int]]):
    """``X`` (and the weights) persisted in the blocks of ``plan``, and each block's
    non-empty source chunk sizes."""
    import dask

    sizes = X.chunks[0]
    packed = tuple(sum(sizes[i] for i in g) for g in plan)
    leaves = [tuple(sizes[i] for i in g if sizes[i] > 0) for g in plan]
    by_reads = _packed_by_reads(X, plan)
    X = X.rechunk({0: packed}) if by_reads is None else by_reads
    if sample_weight is not None:
        by_reads = _packed_by_reads(sample_weight, plan)
        sample_weight = sample_weight.rechunk((packed,)) if by_reads is None else by_reads
    X, sample_weight = dask.persist(X, sample_weight)
    kept = [j for j, n in enumerate(packed) if n > 0]
    return X, sample_weight, [leaves[j] for j in kept]


def _packed_by_reads(arr, plan: list[list[int]]):
    """``arr`` in the row blocks of ``plan``, each block one task that reads its source
    chunks itself (their folded loading tasks, consecutive reads coalesced: routes
    ``fold``, ``defer`` and ``batch`` of :mod:`distgmm.parallel._dask`), or None where
    a chunk is not such a self-contained read (a numpy array in the graph, a computed
    chunk) or the routes are off.

    Persisting through a rechunk runs one task per source chunk, about 1.7 ms of Dask's
    time each on two workers here: 3.8 s for 2,000 Zarr chunks of 500 rows, against
    0.2 s for 8 chunks.
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.core import flatten

    from . import _dask
    from .reduction import READ_BATCH_BYTES

    if not (_dask.enabled("fold") and _dask.enabled("defer")):
        return None
    keys = list(flatten(arr.__dask_keys__()))
    if len(keys) != len(arr.chunks[0]):  # more than one column chunk
        return None
    folded = _dask.fold_inputs(dict(arr.__dask_graph__()), keys)
    if not _dask.self_contained(folded, keys):
        return None
    name = f"distgmm-packed-{tokenize(arr.name, plan)}"
    layer = {}
    for b, group in enumerate(plan):
        reads = _dask.coalesce_reads([(folded[keys[i]], None) for i in group],
                                     READ_BATCH_BYTES)
        key = (name, b, *[0] * (arr.ndim - 1))
        layer[key] = _dask.task_with_deferred(key, _read_block,
                                              _dask.defer([x for x, _, _ in reads]))
    chunks = (tuple(sum(arr.chunks[0][i] for i in g) for g in plan), *arr.chunks[1:])
    return da.Array(layer, name, chunks, dtype=arr.dtype)


def _read_block(reads: list):
    """A packed block: its source chunks' reads, run here, in order."""
    from ._dask import run_deferred

    parts = [run_deferred(task) for task in reads]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def dask_blocks(X, sample_weight=None, cache: str = "auto",
                omit_missing: bool = False) -> Blocks:
    """Blocks over a dask array: features in one chunk, empty chunks dropped.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), known chunk sizes
    sample_weight : dask.array.Array of shape (n_samples,) or None
        Rechunked to the row chunks of ``X``.
    cache : {"auto", "memory", "none"}
        ``"memory"`` persists the data once on the cluster; ``"none"`` re-reads the
        source on every pass (out-of-core); ``"auto"`` persists when the data takes at
        most half the workers' memory.
    omit_missing : bool
        Leave rows holding NaN out of every pass.
    """
    if cache not in CACHES:
        raise ValueError(f"cache={cache!r} is not one of {CACHES}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(
            "The dask array has unknown chunk sizes; call X.compute_chunk_sizes() or "
            "dataframe.to_dask_array(lengths=True) first."
        )
    X = one_feature_chunk(X)
    if sample_weight is not None:
        sample_weight = sample_weight.rechunk((X.chunks[0],))
    leaves = source = None
    if should_persist(X, cache):
        ours = not _persisted(X)  # a user's persisted chunks stay where they are
        plan = _pack_plan_for(X)
        if plan is not None:
            source = X.chunks[0]
            X, sample_weight, leaves = _persist_packed(X, sample_weight, plan)
        elif sample_weight is None:
            X = X.persist()
        else:
            import dask

            X, sample_weight = dask.persist(X, sample_weight)
        if ours:
            from .colocate import spread_persisted

            X, *rest = spread_persisted([X] if sample_weight is None else [X, sample_weight])
            sample_weight = rest[0] if rest else None
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(int)
    blocks = [(i, int(s)) for i, (s, n) in enumerate(zip(starts, X.chunks[0])) if n > 0]
    return Blocks(X, sample_weight, blocks, is_dask=True, omit_missing=omit_missing,
                  leaves=leaves, source_chunks=source)


def _persisted(X) -> bool:
    """Whether ``X``'s chunks are futures already (the user persisted it)."""
    from distributed import Future

    graph = X.__dask_graph__()
    return any(isinstance(graph.get(k), Future) for k in X.__dask_keys__()[0][:1])


def _pack_plan_for(X) -> list[list[int]] | None:
    """:func:`pack_plan` for ``X`` on the active distributed client (none without one:
    packing pays off where tasks and their dependencies cost scheduler time)."""
    from .colocate import active_client

    client = active_client()
    if client is None or _persisted(X):  # a copy of what the user persisted: no
        return None
    threads = max(1, sum(client.nthreads().values()))
    return pack_plan(X.chunks[0], X.shape[1] * X.dtype.itemsize, threads)
