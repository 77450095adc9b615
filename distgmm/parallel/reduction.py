"""One tree reduction of per-chunk partial results, for numpy and for Dask.

``chunk -> combine -> finalize`` on one screen: each block becomes a partial result
by ``fn(X_block, w_block, row_start, *args)``; partials are merged in groups of
``split_every`` in a fixed order, so the same blocks always give the same bits, and
the numpy engine and the Dask graph give identical results for identical blocks. (In a
Dask group task the E-step's partials travel up the tree as plain rows, added as
``merge`` adds, and become statistics once folded: see :class:`_Folder`.)
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial, reduce
from typing import Any

import numpy as np

from ..numerics import suffstats
from ..numerics.suffstats import (
    chunk_rows,
    chunk_stats,
    chunk_stats_row,
    merge,
    pack_stats,
    row_stats,
    row_width,
    unpack_stats,
)
from .blas import in_one_blas_thread, one_blas_thread

SPLIT_EVERY = 8
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool)
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """This process's pool for the numpy engine: one thread per usable core, kept so
    each thread's scratch buffers outlive a pass.

    A forked child gets a new pool: the parent's threads do not exist there, and its
    pool would wait for them forever.
    """
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else os.cpu_count() or 1)
            _pool = (os.getpid(), ThreadPoolExecutor(cores, thread_name_prefix="distgmm-numpy"))
        return _pool[1]


def reduce_list(combine: Callable[[Any, Any], Any], items: list) -> Any:
    """Left fold of ``items`` with ``combine``."""
    return reduce(combine, items)


def _groups(items: list, split_every: int) -> list[list]:
    return [items[i : i + split_every] for i in range(0, len(items), split_every)]


def tree_combine_local(partials: list, combine, split_every: int = SPLIT_EVERY):
    """Combine a list of partials with the same tree shape as :func:`dask_map_reduce`."""
    while len(partials) > 1:
        partials = [reduce_list(combine, g) for g in _groups(partials, split_every)]
    return partials[0]


def fold_tree(nodes: dict, n_leaves: int, combine, split_every: int = SPLIT_EVERY) -> dict:
    """Combine, bottom up, every node of the reduction tree whose children are all known.

    The tree is that of :func:`tree_combine_local`: node ``(0, j)`` is block ``j``'s
    partial and node ``(level + 1, g)`` the left fold of nodes ``(level, g *
    split_every)`` to ``(level, (g + 1) * split_every - 1)`` (fewer at the right edge).
    Whoever computes a node gets the same bits, so parts of the tree can be folded
    on workers and the rest on the driver.

    Parameters
    ----------
    nodes : dict
        ``(level, index) -> partial``; children are replaced by their parents in place.
    n_leaves : int
        Blocks in the pass.
    combine : callable
    split_every : int

    Returns
    -------
    dict
        ``nodes``; a single entry when it held every leaf (or a cover of the tree).
    """
    level, width = 0, n_leaves
    while width > 1:
        parents = -(-width // split_every)
        for g in range(parents):
            kids = [(level, j) for j in range(g * split_every, min((g + 1) * split_every, width))]
            if all(k in nodes for k in kids):
                nodes[(level + 1, g)] = reduce_list(combine, [nodes.pop(k) for k in kids])
        level, width = level + 1, parents
    return nodes


# combine -> (pack, unpack): partials a group task could not fold travel as one array
_PACKERS = {merge: (pack_stats, unpack_stats)}
PACK_MIN = 8


def packed(nodes: dict, combine):
    """``nodes`` ready to leave a worker: many same-kind partials as one array (a
    persisted group whose chunks are spread over the workers folds little, and a
    thousand partials cost ~0.1 s to serialise one by one), else as they are."""
    packer = _PACKERS.get(combine)
    if packer is None or len(nodes) < PACK_MIN:
        return nodes
    keys = list(nodes)
    rows = packer[0]([nodes[k] for k in keys])
    return nodes if rows is None else ("packed", keys, *rows)


def unpacked(part, combine) -> dict:
    """The nodes :func:`packed` (or :meth:`_Folder.done`, as rows) gave."""
    if isinstance(part, dict):
        return part
    if part[0] == "rows":
        return dict(zip(part[1], part[2]))
    _, keys, template, rows = part
    return dict(zip(keys, _PACKERS[combine][1](template, rows)))


def end_tree(parts: list, n_leaves: int, combine, args: tuple, split_every: int):
    """The driver's end of the tree over the nodes its group tasks returned.

    Nodes that came as rows (the E-step's, :class:`_Folder`) are folded as rows,
    with ``np.add``, and become statistics once at the root (:func:`row_stats`: the
    same bits as merging their statistics; 10,000 leaves fold in ~7 ms as rows, ~50 ms
    as statistics). Should tasks differ (a worker without the compiled kernel), every
    row becomes statistics first.
    """
    nodes: dict = {}
    rows: dict = {}
    for part in parts:
        (rows if isinstance(part, tuple) and part[0] == "rows" else nodes).update(
            unpacked(part, combine))
    if rows and not nodes:
        (total,) = fold_tree(rows, n_leaves, np.add, split_every).values()
        return row_stats(total, args[0])
    nodes.update({key: row_stats(row, args[0]) for key, row in rows.items()})
    (total,) = fold_tree(nodes, n_leaves, combine, split_every).values()
    return total


def _as_rows(fn, combine, args):
    """``(leaf, run, finish)`` where a pass's leaves can be folded as plain rows (the
    compiled E-step's :func:`~distgmm.numerics.suffstats.chunk_stats_row`, added as
    :func:`merge` adds): ``leaf(x, w, row_start)`` gives a leaf's row, ``run(x, w,
    sizes, row_start)`` the rows of a run of consecutive leaves by one kernel call
    (:func:`~distgmm.numerics.suffstats.chunk_rows`), and ``finish`` turns a folded row
    into the partial ``fn`` would have folded to; None elsewhere."""
    if fn is chunk_stats and combine is merge and len(args) in (1, 2) and \
            args[1:] in ((), ("float64",)) and suffstats.HAVE_COMPILED:
        params = args[0]
        return (partial(chunk_stats_row, params=params), partial(chunk_rows, params=params),
                partial(row_stats, params=params))
    return None


class _Folder:
    """A group task's leaves folded up the tree as they come (:func:`_fold_up`): the
    same nodes and bits as :func:`fold_tree` over all of them. Where the leaves fold as
    rows (:func:`_as_rows`), a run of small chunks is one kernel call and its whole
    groups of siblings are added vectorised (:func:`_fold_run`)."""

    def __init__(self, fn, combine, split_every, n_leaves, args):
        self.nodes: dict = {}
        self.combine, self.split_every, self.n_leaves = combine, split_every, n_leaves
        rows = _as_rows(fn, combine, args)
        if rows is None:
            self.leaf, self.add, self.run, self.finish = (partial(_leaf, fn, args), combine,
                                                          None, None)
        else:
            (self.leaf, self.run, self.finish), self.add = rows, np.add
            self.run_leaves = max(1, RUN_ROWS_BYTES // (8 * row_width(args[0])))

    def put(self, j: int, x, w, row_start: int) -> None:
        self.nodes[(0, j)] = self.leaf(x, w, row_start)
        _fold_up(self.nodes, j, self.n_leaves, self.add, self.split_every)

    def put_run(self, first: int, x, w, sizes, row_start: int) -> None:
        """Leaves ``first``, ``first + 1``, ... : the consecutive chunks of ``sizes``
        rows that make up ``x`` (and ``w``)."""
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        if self.run is not None:  # a kernel call per sub-run: its rows stay small
            for i in range(0, len(sizes), self.run_leaves):
                a, b = int(bounds[i]), int(bounds[min(i + self.run_leaves, len(sizes))])
                rows = self.run(x[a:b], None if w is None else w[a:b],
                                sizes[i : i + self.run_leaves], row_start + a)
                _fold_run(self.nodes, first + i, rows, self.n_leaves, self.split_every)
            return
        for j, ((xc, wc), offset) in enumerate(zip(_cut(x, w, sizes), bounds[:-1])):
            self.put(first + j, xc, wc, row_start + int(offset))

    def done(self):
        """The nodes, ready to leave the task: rows stay rows (``("rows", keys,
        stacked)``, for the driver to fold as rows too: :func:`end_tree`), else
        :func:`packed`."""
        if self.finish is not None:
            keys = list(self.nodes)
            return "rows", keys, np.stack([self.nodes[k] for k in keys])
        return packed(self.nodes, self.combine)


def _leaf(fn, args, x, w, row_start):
    return fn(x, w, row_start, *args)


RUN_ROWS_BYTES = 4 << 20
"""Most bytes of E-step rows one kernel call over a run of chunks makes at once (a row
is K x feature rows long: 343 kB for K=20, d=64, full)."""
RUN_CHUNK_BYTES = 16 << 10
"""Chunks up to this size that a group task holds at consecutive positions go through
the kernel as one run, copied together: below it a copy costs less than a call each."""


def tree_nodes(fn, combine, split_every, n_leaves, positions, xs, ws, starts, *args):
    """A group task: ``fn`` on each of its blocks (or the E-step's rows, see
    :class:`_Folder`), folded as far as the group allows (:meth:`_Folder.done`).

    ``ws`` is None for no weights; positions and starts may be arrays."""
    folder = _Folder(fn, combine, split_every, n_leaves, args)
    ws = [None] * len(xs) if ws is None else ws
    items = list(zip(np.asarray(positions).tolist(), xs, ws, np.asarray(starts).tolist()))
    i = 0
    while i < len(items):
        j, size = i + 1, 0
        while (folder.run is not None and j < len(items) and _joins(items[j - 1], items[j])
               and (size := size + items[j - 1][1].nbytes) <= READ_BATCH_BYTES):
            j += 1
        if j - i == 1:
            folder.put(*items[i])
        else:
            _, xr, wr, _ = zip(*items[i:j])
            folder.put_run(items[i][0], np.concatenate(xr),
                           None if wr[0] is None else np.concatenate(wr),
                           [len(x) for x in xr], items[i][3])
        i = j
    return folder.done()


def _joins(a, b) -> bool:
    """Whether chunk ``b`` joins the run of ``a``, the chunk before it (see
    :data:`RUN_CHUNK_BYTES`)."""
    (ja, xa, wa, _), (jb, xb, wb, _) = a, b
    return (jb == ja + 1 and type(xa) is type(xb) is np.ndarray
            and max(xa.nbytes, xb.nbytes) <= RUN_CHUNK_BYTES
            and xa.dtype == xb.dtype and xa.shape[1:] == xb.shape[1:]
            and (wa is None) == (wb is None))


def packed_tree_nodes(fn, combine, split_every, n_leaves, layout, xs, ws, starts, *args):
    """:func:`tree_nodes` over packed blocks: ``layout`` holds each block's first leaf
    and its source chunks' sizes; ``fn`` runs on each source chunk's rows."""
    folder = _Folder(fn, combine, split_every, n_leaves, args)
    ws = [None] * len(xs) if ws is None else ws
    for (first, sizes), x, w, start in zip(layout, xs, ws, np.asarray(starts).tolist()):
        folder.put_run(first, x, w, sizes, start)
    return folder.done()


def dask_map_reduce(
    X,
    w,
    blocks: list[tuple[int, int]],
    fn: Callable,
    combine: Callable,
    args: tuple,
    split_every: int = SPLIT_EVERY,
    leaves: list | None = None,
    plans: dict | None = None,
):
    """Build and compute (once) a tree reduction over row blocks of a dask array.

    Parameters
    ----------
    X : dask.array.Array
        Rows chunked, features in one chunk.
    w : dask.array.Array or None
        Sample weights chunked like the rows of ``X``.
    blocks : list of (block_index, row_start)
        The non-empty row blocks to visit.
    fn, combine : callables
        Module-level functions (they travel to workers by reference).
    args : tuple
        Small arguments embedded in every chunk task (parameters, seeds).
    split_every : int
        Fan-in of the tree.
    leaves : list of tuple of int, optional
        Persisted packed blocks (:func:`distgmm.parallel.blocks.pack_plan`): the row
        counts of the source chunks in each block. Those are the leaves of the tree:
        ``fn`` runs on each (a view), or the E-step's kernel over a run of them.
    plans : dict, optional
        Where a fit keeps what its out-of-core passes read (:func:`_read_plan`), so
        that later passes skip folding and coalescing the chunks' reads.

    Notes
    -----
    Persisted chunks are visited by one task per worker thread, over the chunks that
    worker holds (:mod:`distgmm.parallel.colocate`), submitted straight to the client:
    no graph to build, optimise and order (4-5 ms less per pass here, where a client
    round trip takes 6-11 ms). Otherwise each chunk gets a task, into which its loading
    tasks that nothing else uses (reading a Zarr chunk or a Parquet row group) are
    folded (:func:`distgmm.parallel._dask.fold_inputs`). Either way the tree and the
    bits are those of the numpy engine, and tasks run with one BLAS thread
    (:mod:`distgmm.parallel.blas`).

    Returns
    -------
    The combined result, computed with the active scheduler (a ``distributed.Client``
    if one is active, threads otherwise).
    """
    from . import _dask
    from .colocate import colocated_groups

    inputs = _input_graph(X, w)  # materialised once: grouping and folding both read it
    xkeys = [(X.name, i, 0) for i, _ in blocks]
    wkeys = [None if w is None else (w.name, i) for i, _ in blocks]
    groups = colocated_groups(inputs, xkeys, also=[] if w is None else wkeys)
    if leaves is not None:  # persisted by distgmm: futures, wherever they are now
        groups = groups or [[j] for j in range(len(blocks))]
    if groups is not None:  # every input is a future of the active client
        return _grouped_pass(inputs, xkeys, wkeys, blocks, groups, fn, combine, args,
                             split_every, leaves)
    if _dask.enabled("graph"):
        folded, groups, reads = _read_plan(inputs, X, w, xkeys, wkeys, plans)
        if groups is not None:
            return _streamed_pass(inputs, reads, blocks, groups, fn, combine, args,
                                  split_every)
        partials = _graph_pass(inputs, folded, xkeys, wkeys, blocks, fn, combine, args,
                               split_every)
    else:
        partials = _delayed_pass(X, w, blocks, fn, combine, args, split_every)
    # the last level runs here, on partials fetched straight from the workers: one
    # round trip through the scheduler less per pass
    return reduce_list(combine, list(partials))


_plans_lock = threading.Lock()


def _read_plan(inputs, X, w, xkeys, wkeys, plans: dict | None):
    """``(folded, groups, reads)``: the chunks' folded loading tasks, the streamed groups
    (or ``None``) and each group's coalesced reads -- the same every pass of a fit, so
    built once per fit and worker count (in ``plans``): later passes skip folding and
    coalescing (28 ms of client time per pass at 2,000 chunks here)."""
    from . import _dask

    key = (worker_threads(), X.name, None if w is None else w.name, tuple(xkeys),
           *(_dask.enabled(route) for route in ("fold", "defer", "batch")))
    if plans is not None and (plan := plans.get(key)) is not None:
        return plan
    folded = _dask.fold_inputs(inputs, xkeys + [k for k in wkeys if k is not None])
    groups = streamed_groups(folded, xkeys, wkeys, key[0])
    reads = None if groups is None else [_dask.coalesce_reads(
        [(folded[xkeys[j]], None if wkeys[j] is None else folded[wkeys[j]])
         for j in positions], READ_BATCH_BYTES) for positions in groups]
    if plans is not None:
        with _plans_lock:  # passes of one fit may run side by side (lockstep)
            plans.clear()  # one plan per fit: a new worker count replaces it
            plans[key] = (folded, groups, reads)
    return folded, groups, reads


def _input_graph(X, w) -> dict:
    """The low-level graph of the pass's inputs, as one dict."""
    graph = dict(X.__dask_graph__())
    if w is not None:
        graph.update(w.__dask_graph__())
    return graph


def _grouped_pass(inputs, xkeys, wkeys, blocks, groups, fn, combine, args, split_every,
                  leaves=None):
    """One task per group of persisted chunks; the driver completes the tree."""
    client = inputs[xkeys[0]].client
    name = f"distgmm-{fn.__name__}-{uuid.uuid4().hex}"
    w_none = all(k is None for k in wkeys)
    if leaves is None:
        layout, n_leaves = None, len(blocks)
    else:  # each block's first leaf and its leaves' sizes
        firsts = np.concatenate([[0], np.cumsum([len(s) for s in leaves])[:-1]])
        sizes = [np.asarray(s, np.int64) for s in leaves]
        layout, n_leaves = list(zip(firsts.tolist(), sizes)), sum(map(len, leaves))
    tasks = []
    for g, positions in enumerate(groups):
        # only the futures as lists: Dask walks every item of a list argument (~4 us
        # each, a third of a pass over 10,000 user-persisted chunks), not an array's
        xs = [inputs[xkeys[j]] for j in positions]
        ws = None if w_none else [inputs[wkeys[j]] for j in positions]
        starts = np.array([blocks[j][1] for j in positions], np.int64)
        where = (np.array(positions, np.int64) if layout is None
                 else [layout[j] for j in positions])
        task = tree_nodes if layout is None else packed_tree_nodes
        tasks.append(client.submit(
            in_one_blas_thread, task, fn, combine, split_every, n_leaves, where, xs, ws,
            starts, *args, key=f"{name}-group-{g}", pure=False))
    return end_tree(client.gather(tasks), n_leaves, combine, args, split_every)


def _graph_pass(inputs, folded, xkeys, wkeys, blocks, fn, combine, args,
                split_every) -> tuple:
    """All but the last tree level as one hand-built graph, chunk reads folded in."""
    from . import _dask

    name = f"distgmm-{fn.__name__}-{uuid.uuid4().hex}"
    layer: dict = {}
    keys = []
    for j, (xkey, wkey, (_, row_start)) in enumerate(zip(xkeys, wkeys, blocks)):
        layer[(name, 0, j)] = (in_one_blas_thread, fn, folded.get(xkey, xkey),
                               folded.get(wkey, wkey), row_start, *args)
        keys.append((name, 0, j))
    level = 0
    while len(keys) > split_every:
        level += 1
        groups = _groups(keys, split_every)
        keys = [(name, level, j) for j in range(len(groups))]
        layer.update({k: (reduce_list, combine, list(g)) for k, g in zip(keys, groups)})
    return _dask.compute_graph({**inputs, **layer}, keys)


TASKS_PER_THREAD = 2
"""Out-of-core groups per worker thread: two, so a slow worker's share can move."""


def worker_threads() -> int:
    """Threads of the active scheduler: the client's workers', else this machine's."""
    from .colocate import active_client

    client = active_client()
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return os.cpu_count() or 1


def streamed_groups(folded: dict, xkeys: list, wkeys: list, threads: int) -> list | None:
    """Consecutive chunk positions, ``TASKS_PER_THREAD`` groups per worker thread.

    ``None`` (one task per chunk) when the chunks are not all folded, self-contained
    reads (persisted data, or the ``fold``/``defer`` routes are off) or when there are
    not more chunks than groups.
    """
    from . import _dask

    n_groups = TASKS_PER_THREAD * threads
    keys = xkeys + [k for k in wkeys if k is not None]
    if (len(xkeys) <= n_groups or not _dask.enabled("defer")
            or not _dask.self_contained(folded, keys)):
        return None
    bounds = np.linspace(0, len(xkeys), n_groups + 1).round().astype(int)
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _load(xtask, wtask):
    from ._dask import run_deferred

    return run_deferred(xtask), run_deferred(wtask)


READ_BATCH_BYTES = 8 << 20
"""Largest read a run of small consecutive out-of-core chunks is coalesced into."""


def streamed_nodes(fn, combine, split_every, n_leaves, positions, reads, starts, *args):
    """A group task out of core: read while the previous read is computed.

    ``reads`` holds (x, w, sizes) loading tasks, received unexecuted: one chunk each, or
    (``sizes`` given) a run of consecutive small chunks read by one call
    (:func:`distgmm.parallel._dask.coalesce_reads`) and handed to the folder with its
    chunks' sizes (:meth:`_Folder.put_run`: views, or rows of one kernel call). One
    background thread does read ``i + 1`` while ``fn`` runs on the chunks of
    read ``i`` (reading Zarr or Parquet releases the GIL), so at most two reads are in
    memory. ``fn`` sees each source chunk alone, and partials are folded up the tree as
    soon as a node's children are all present: the same nodes and bits as
    :func:`tree_nodes`.
    """
    folder = _Folder(fn, combine, split_every, n_leaves, args)
    chunks = iter(zip(positions, starts))
    with one_blas_thread(), ThreadPoolExecutor(1, thread_name_prefix="distgmm-read") as reader:
        ahead = reader.submit(_load, *reads[0][:2])
        for i, (_, _, sizes) in enumerate(reads):
            x, w = ahead.result()
            if i + 1 < len(reads):
                ahead = reader.submit(_load, *reads[i + 1][:2])
            j, start = next(chunks)
            if sizes is None:
                folder.put(j, x, w, start)
            else:
                folder.put_run(j, x, w, sizes, start)
                for _ in sizes[1:]:
                    next(chunks)
            del x, w  # before the next read is submitted: two reads at most
    return folder.done()


def _cut(x, w, sizes) -> list:
    """A coalesced read back as its chunks (views)."""
    cuts = np.cumsum((0, *sizes))
    return [(x[a:b], None if w is None else w[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def _fold_up(nodes: dict, j: int, n_leaves: int, combine, split_every: int,
             level: int = 0) -> None:
    """Fold node ``(level, j)``'s ancestors whose children are all present (as
    :func:`fold_tree`)."""
    index, width = j, n_leaves
    for _ in range(level):
        width = -(-width // split_every)
    while width > 1:
        g = index // split_every
        kids = [(level, i) for i in range(g * split_every, min((g + 1) * split_every, width))]
        if not all(k in nodes for k in kids):
            return
        nodes[(level + 1, g)] = reduce_list(combine, [nodes.pop(k) for k in kids])
        level, index, width = level + 1, g, -(-width // split_every)


def _fold_run(nodes: dict, first: int, rows: np.ndarray, n_leaves: int,
              split_every: int) -> None:
    """Leaves ``first``, ``first + 1``, ... given as the rows of ``rows``, folded into
    ``nodes`` as :func:`_fold_up` would fold them one by one with ``np.add``: the same
    nodes, the same bits.

    Each group of siblings that lies wholly in the run is added kid by kid, in order,
    vectorised over the groups (``p += kid`` is ``np.add(p, kid)`` entry for entry); the
    run's parents are the next level's run. Nodes at the run's edges join ``nodes``,
    where they meet their siblings from other runs.
    """
    s, level, lo, width = split_every, 0, first, n_leaves
    while width > 1 and len(rows):
        hi = lo + len(rows)
        g0 = -(-lo // s)  # the first group that starts in the run
        g1 = -(-width // s) if hi == width else hi // s  # past the last one that ends in it
        if g1 <= g0:
            break
        a, b = g0 * s - lo, min(g1 * s, width) - lo  # the whole groups' rows
        for i in [*range(a), *range(b, len(rows))]:  # copies: a view would keep the run
            nodes[(level, lo + i)] = rows[i].copy()
            _fold_up(nodes, lo + i, n_leaves, np.add, s, level)
        full = (b - a) // s
        kids = rows[a : a + full * s].reshape(full, s, rows.shape[1])
        parents = np.empty((g1 - g0, rows.shape[1]))
        parents[:full] = kids[:, 0]
        for i in range(1, s):
            parents[:full] += kids[:, i]
        if full < g1 - g0:  # the tree's last group, with fewer kids
            parents[full] = reduce_list(np.add, list(rows[a + full * s : b]))
        rows, lo, level, width = parents, g0, level + 1, -(-width // s)
    for i in range(len(rows)):
        nodes[(level, lo + i)] = rows[i].copy()
        _fold_up(nodes, lo + i, n_leaves, np.add, s, level)


def _streamed_pass(inputs, reads, blocks, groups, fn, combine, args, split_every):
    """One task per group of consecutive out-of-core chunks; the driver ends the tree."""
    from . import _dask

    name = f"distgmm-{fn.__name__}-{uuid.uuid4().hex}"
    layer = {}
    for g, (positions, group_reads) in enumerate(zip(groups, reads)):
        layer[(name, g)] = _dask.task_with_deferred(
            (name, g), streamed_nodes, fn, combine, split_every, len(blocks), positions,
            _dask.defer(group_reads), [blocks[j][1] for j in positions], *args)
    return end_tree(_dask.compute_graph({**inputs, **layer}, list(layer)), len(blocks),
                    combine, args, split_every)


def _chunk_task(fn, row_start, args, x, w):
    """``fn`` on one chunk with one BLAS thread (the public route's chunk task)."""
    return in_one_blas_thread(fn, x, w, row_start, *args)


def _delayed_pass(X, w, blocks, fn, combine, args, split_every) -> tuple:
    """The graph pass's tree through public APIs only (no input folding)."""
    import dask

    name = f"distgmm-{fn.__name__}-{uuid.uuid4().hex}"
    xs = X.to_delayed(optimize_graph=True)[:, 0]
    ws = [None] * len(xs) if w is None else w.to_delayed(optimize_graph=True)
    nodes = [
        dask.delayed(partial(_chunk_task, fn, row_start, args), name=f"{name}-fn",
                     pure=False)(xs[i], ws[i], dask_key_name=(name, 0, j))
        for j, (i, row_start) in enumerate(blocks)
    ]
    level = 0
    while len(nodes) > split_every:
        level += 1
        nodes = [dask.delayed(reduce_list, pure=False)(combine, g, dask_key_name=(name, level, j))
                 for j, g in enumerate(_groups(nodes, split_every))]
    return dask.compute(*nodes)


def numpy_map_reduce(
    X: np.ndarray,
    w: np.ndarray | None,
    blocks: list[tuple[int, int]],
    fn: Callable,
    combine: Callable,
    args: tuple,
    split_every: int = SPLIT_EVERY,
):
    """The same reduction over in-memory blocks, in this process.

    Blocks run in a pool of one thread per core, each with one BLAS thread; partials
    are combined in block order whatever order they finish in.
    """
    bounds = [start for _, start in blocks] + [X.shape[0]]

    def one(a, b):
        return fn(X[a:b], None if w is None else w[a:b], a, *args)

    with one_blas_thread():
        if len(blocks) == 1:
            partials = [one(0, X.shape[0])]
        else:
            partials = list(_threads().map(one, bounds[:-1], bounds[1:]))
    return tree_combine_local(partials, combine, split_every)
