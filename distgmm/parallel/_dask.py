"""Every private Dask API distgmm uses, each version-gated and failing loudly.

No other module of distgmm touches Dask's or distributed's private parts
(tests/test_architecture.py greps for them). Each private route has a public fallback
that gives the same bits, only slower or with more worker memory; when an assumption
about Dask breaks, the route is switched off with one ``RuntimeWarning`` that names the API, the
installed version and the consequence. Nothing falls back silently.

Private routes
--------------
``fold``: ``dask._task_spec`` (``Task``, ``DataNode``, ``Alias``, ``GraphNode``,
``Task.substitute``, ``.dependencies``)
    Out of core, each chunk's loading tasks (read a Zarr chunk or a Parquet row group,
    convert, slice) are nested inside the pass task that consumes the chunk
    (:func:`fold_inputs`): one task per chunk, and no loaded chunk waits in a worker's
    memory for its consumer or travels to another worker. Without it, peak worker
    memory grew with the number of rows (more loaded chunks queued per worker), and
    1e6 x 16 out of core with 8 MiB chunks took 0.57 s per iteration against 0.48 s
    folded (commit b3a2fc4; the small shared literal -- the opened Zarr array -- is
    copied into every task, else the scheduler ran 14-18 of 22 chunk tasks on one of
    two workers). With folding, ``benchmarks/results/scaling.md`` has the peak worker
    memory of an out-of-core fit at 247-268 MiB from 1e5 to 1e7 rows (a raw read of
    the same data: 237-240 MiB).
    Fallback: the chunks as the array graph gives them (public route below).
``defer``: ``dask._task_spec.DataNode`` holding folded ``Task`` objects, called in a task
    Out of core with more chunks than worker threads, one task per group of consecutive
    chunks receives the chunks' folded loading tasks as data and runs them itself, one
    read ahead of the arithmetic (:func:`distgmm.parallel.reduction.streamed_nodes`):
    per-pass scheduler work grows with the worker threads, not the chunks, and a pass
    costs about max(read, compute). Fallback: one task per chunk (route ``fold``).

``batch``: the folded loading task of ``dask.array.from_array``/``from_zarr`` chunks
    (``Task(func=dask.array.core.getter, args=(DataNode(array), DataNode(index)))``)
    Inside a group task, consecutive small chunks of one array are read by one
    ``getter`` call over their rows (:func:`coalesce_reads`), then cut back into the
    chunks as views: a Zarr array of 500-row chunks is read 16 chunks or more per call.
    The kernel still sees each source chunk alone, so the bits do not change. Fallback:
    one read per chunk (per-chunk read overhead: ~1 ms per Zarr chunk here).

``fold``, ``defer`` and ``batch`` also build distgmm's persisted copy of small chunks
    (``cache="memory"``, :func:`distgmm.parallel.blocks._packed_by_reads`): one task per
    packed block runs its chunks' folded, coalesced reads, instead of a task per chunk
    and a rechunk (3.8 s -> 0.5 s for 2,000 Zarr chunks of 500 rows on two workers).
    Fallback: the rechunk.

``graph``: ``dask.optimization.cull`` and ``dask.delayed.Delayed(key, graph)``
    Computing a hand-built low-level graph (the folded chunk tasks and the reduction
    tree) with the active scheduler. The public route builds the same tree with
    ``X.to_delayed(optimize_graph=True)`` and ``dask.delayed``; it cannot fold inputs,
    and it costs more (measured for this module on a shared 2-core machine, 8 chunks
    of 50,000 x 16, medians over 10-40 passes, two runs each): threads scheduler, a null
    pass 2.3-3.5 ms private against 3.6-4.9 ms public; on a LocalCluster of two
    single-threaded worker processes an out-of-core Zarr E-step pass ran 8 tasks
    private against 17 public (a load task per chunk, plus the shared Zarr array),
    while its wall time (150-245 ms either way) was within that machine's noise.

Public routes used instead of private ones
------------------------------------------
* Which scheduler is active (was ``dask.base.get_scheduler``):
  ``dask.config.get("scheduler")`` and ``distributed.get_client()``
  (:func:`distgmm.parallel.colocate.client_is_active`); nothing measurable.
* The input graph of a pass (was ``HighLevelGraph.merge``): the collections'
  ``__dask_graph__()`` mappings merged as dicts; nothing measurable.
* The job's drain (was ``Worker.state.tasks[...].state`` against hard-coded state
  names, which missed the ``cancelled`` state a cancelled running task is in):
  ``Worker.active_threads`` (documented in ``distributed.Worker``) through
  ``Client.run``, plus ``Client.processing()``; it runs only after a failure.
* ``dask.array.reduction(..., concatenate=False)`` was not adopted: it computes the
  last tree level on a worker, one scheduler round trip more per pass than fetching
  the last partials to the driver (28 -> 19 ms per pass at 8 chunks, commit 9d3534f),
  and cannot fold inputs either.

Versions
--------
Checked against dask 2026.8.0 and distributed 2026.8.0. The private routes are used
for dask in ``[TESTED_DASK[0], TESTED_DASK[1])``: the lower bound is the release that
introduced ``dask._task_spec``, the upper one the next minor release after the newest
checked. After an upgrade, run ``tests/test_dask_internals.py`` and move the bound.

Switches
--------
``DISTGMM_DASK_PRIVATE=0`` in the environment, or :func:`private_routes` (a context
manager, for tests), turns every private route off without a warning.

Upstream: the layout follows flox's ``flox/dask.py`` (one module for Dask internals);
:func:`fold_inputs` was ``distgmm/parallel/fuse.py``.
"""

from __future__ import annotations

import contextlib
import operator
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import dask
from dask.sizeof import sizeof

from .readers import adapted
from .versions import in_tested_range, switched_off

TESTED_DASK = ("2024.12.0", "2026.9.0")  # [first, first not checked)
CHECKED = "dask 2026.8.0, distributed 2026.8.0"
INLINE_BYTES = 64 << 10  # shared literals up to this size are copied into each task
ENV_SWITCH = "DISTGMM_DASK_PRIVATE"


@dataclass(frozen=True)
class Route:
    """A private route: the APIs it uses and what its loss costs."""

    name: str
    apis: tuple[tuple[str, str], ...]  # (module, attribute)
    consequence: str


ROUTES = {
    "fold": Route(
        "fold",
        (("dask._task_spec", "Task"), ("dask._task_spec", "DataNode"),
         ("dask._task_spec", "Alias"), ("dask._task_spec", "GraphNode"),
         ("dask._task_spec", "TaskRef"), ("dask._task_spec", "convert_legacy_task")),
        "out-of-core passes no longer read each chunk inside the task that uses it: "
        "loaded chunks wait in worker memory (peak memory grows with the rows) and "
        "iterations are slower (0.48 -> 0.57 s at 1e6 x 16); results are unchanged",
    ),
    "defer": Route(
        "defer",
        (("dask._task_spec", "DataNode"), ("dask._task_spec", "Task")),
        "out-of-core passes with many small chunks run one task per chunk instead of "
        "one task per worker thread reading its chunks with the next read overlapped "
        "(per-iteration cost grows with the number of chunks); results are unchanged",
    ),
    "batch": Route(
        "batch",
        (("dask._task_spec", "Task"), ("dask._task_spec", "DataNode"),
         ("dask.array.core", "getter")),
        "out-of-core passes read small chunks one call each instead of a run of "
        "consecutive chunks per call (about 1 ms per Zarr chunk more); results are "
        "unchanged",
    ),
    "graph": Route(
        "graph",
        (("dask.optimization", "cull"), ("dask.delayed", "Delayed")),
        "passes are built with X.to_delayed() and dask.delayed instead of one "
        "hand-built graph (a few ms more per pass, no input folding); results are "
        "unchanged",
    ),
}

_lock = threading.Lock()
_usable: dict[str, bool] = {}  # what the check at import found
_override: list[bool] = []  # private_routes() stack


def _probe_fold() -> None:
    """Fold a tiny graph and run it: raises if ``dask._task_spec`` changed."""
    from dask._task_spec import Task, TaskRef

    graph = {"lit": 2.0, "load": Task("load", operator.add, TaskRef("lit"), 1.0),
             "use": Task("use", operator.mul, TaskRef("load"), 2.0)}
    folded = _fold(graph, ["use"])["use"]
    if folded.dependencies or folded({}) != 6.0:
        raise AssertionError("Task.substitute no longer nests a dependency")
    legacy = {"load": (operator.add, 2.0, 1.0), "use": (operator.mul, "load", 2.0)}
    folded = _fold(legacy, ["use"])["use"]
    if folded.dependencies or folded({}) != 6.0:
        raise AssertionError("convert_legacy_task no longer converts a tuple task")


def _probe_defer() -> None:
    """Tasks carried as data into another task and run there: raises if changed."""
    from dask._task_spec import Task, TaskRef

    graph = {"lit": 2.0, "load": Task("load", operator.add, TaskRef("lit"), 1.0)}
    (loader,) = _fold({**graph, "use": Task("use", len, TaskRef("load"))},
                      ["use"])["use"].args  # a self-contained loading task
    outer = task_with_deferred("outer", _run_all, defer([loader, None]))
    if outer({}) != [3.0, None]:
        raise AssertionError("a DataNode-wrapped list of Tasks is no longer passed as data")


def _run_all(loaders):
    return [run_deferred(t) for t in loaders]


class _ArrayLike:
    """An array that is not numpy (as a Zarr array is not): ``from_array`` makes a
    ``getter`` task per chunk for it instead of slicing it at graph construction."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

    def __getitem__(self, index):
        return self.data[index]


def _probe_batch() -> None:
    """Coalesce the reads of a tiny ``from_array``: raises if getter tasks changed."""
    import numpy as np
    from dask.array import from_array

    data = np.arange(24.0).reshape(12, 2)
    X = from_array(_ArrayLike(data), chunks=(3, 2), inline_array=False)
    keys = [(X.name, i, 0) for i in range(4)]
    folded = _fold(dict(X.__dask_graph__()), keys)
    reads = coalesce_reads([(folded[k], None) for k in keys], 1 << 20, force=True)
    if [sizes for *_, sizes in reads] != [(3, 3, 3, 3)]:
        raise AssertionError("from_array chunk reads are no longer getter(array, index)")
    if not np.array_equal(reads[0][0]({}), data):
        raise AssertionError("a coalesced getter read returned other rows")


def _probe_graph() -> None:
    """Cull and compute a tiny graph: raises if ``cull`` or ``Delayed`` changed."""
    from dask.delayed import Delayed
    from dask.optimization import cull

    graph, _ = cull({"a": 1, "b": (operator.add, "a", 1), "c": 5}, ["b"])
    if set(graph) != {"a", "b"} or Delayed("b", graph).compute(scheduler="sync") != 2:
        raise AssertionError("cull or Delayed(key, graph) behave differently")


_PROBES: dict[str, Callable[[], None]] = {"fold": _probe_fold, "graph": _probe_graph,
                                          "defer": _probe_defer, "batch": _probe_batch}


def _warn(route: Route, why: str) -> None:
    apis = ", ".join(f"{m}.{a}" for m, a in route.apis)
    warnings.warn(
        f"distgmm: private Dask route {route.name!r} ({apis}) is off: {why} "
        f"(installed dask {dask.__version__}; checked against {CHECKED}). "
        f"Consequence: {route.consequence}.",
        RuntimeWarning, stacklevel=3,
    )


def _check_versions() -> dict[str, bool]:
    """Decide, once, which private routes may be used, warning for each one that may not.

    Called at import; tests call it again after breaking an assumption.
    """
    usable = {}
    in_range = in_tested_range(dask.__version__, *TESTED_DASK)
    for name, route in ROUTES.items():
        if not in_range:
            _warn(route, f"dask {dask.__version__} is outside the tested range "
                         f"[{TESTED_DASK[0]}, {TESTED_DASK[1]})")
            usable[name] = False
            continue
        try:
            _PROBES[name]()
        except Exception as exc:  # ImportError, AttributeError, changed behaviour
            _warn(route, f"{type(exc).__name__}: {exc}")
            usable[name] = False
        else:
            usable[name] = True
    with _lock:
        _usable.clear()
        _usable.update(usable)
    return usable


def enabled(name: str) -> bool:
    """Whether private route ``name`` is usable and switched on."""
    if _override:
        if not _override[-1]:
            return False
    elif switched_off(ENV_SWITCH):
        return False
    return _usable.get(name, False)


@contextlib.contextmanager
def private_routes(on: bool) -> Iterator[None]:
    """Switch every private route on (where usable) or off inside the block.

    Parameters
    ----------
    on : bool
        False runs the public fallbacks; True uses each route the import check allowed,
        whatever ``DISTGMM_DASK_PRIVATE`` says.
    """
    _override.append(bool(on))
    try:
        yield
    finally:
        _override.pop()


def _small_literal(value, readers: dict | None):
    """A fresh DataNode of ``value`` when it is plain data of at most ``INLINE_BYTES``;
    with ``readers`` (``value`` is the array a ``getter`` reads), through the registered
    read adapters (:mod:`distgmm.parallel.readers`), once per value."""
    from dask._task_spec import DataNode, GraphNode, TaskRef

    if isinstance(value, DataNode):
        value = value.value
    elif isinstance(value, (GraphNode, TaskRef, tuple, list, dict)):
        # tasks, aliases, references; a persisted chunk's distributed.Future is a
        # TaskRef, not a GraphNode: copied in, a task would get the Future, not its data
        return None
    if sizeof(value) > INLINE_BYTES:
        return None
    if readers is None:
        return DataNode(None, value)
    if id(value) not in readers:  # one reader per array: coalesced reads compare by `is`
        readers[id(value)] = (value, adapted(value))  # holding value keeps its id unique
    return DataNode(None, readers[id(value)][1])


def _getter_source(node):
    """The key whose value a ``getter(array, index)`` task reads rows from, else ``None``:
    only such an array goes through the read adapters, as only rows are read from it."""
    from dask._task_spec import TaskRef
    from dask.array.core import getter, getter_inline, getter_nofancy

    if node.func in (getter, getter_inline, getter_nofancy) and node.args and isinstance(
            node.args[0], TaskRef):
        return node.args[0].key
    return None


def _fold(graph: Mapping, keys: list) -> dict:
    from dask._task_spec import Alias, GraphNode, Task, convert_legacy_task

    if any(type(node) is tuple for node in graph.values()):
        # tuple tasks (from dask.dataframe.from_graph layers) as Task nodes, so that they
        # fold like the rest and count as dependents
        graph = {k: convert_legacy_task(k, v, graph) if type(v) is tuple else v
                 for k, v in graph.items()}
    dependents = Counter(dep for node in graph.values() if isinstance(node, GraphNode)
                         for dep in node.dependencies)
    readers: dict = {}

    def fold(key):
        node = graph.get(key)
        if isinstance(node, Alias) and len(node.dependencies) == 1:
            (target,) = node.dependencies
            return fold(target) if dependents[target] == 1 else None
        if not isinstance(node, Task):
            return None
        subs = {}
        source = _getter_source(node)
        for dep in node.dependencies:
            if dep not in graph:
                continue
            adapt = readers if dep == source else None
            if (literal := _small_literal(graph[dep], adapt)) is not None:
                subs[dep] = literal
            elif dependents[dep] == 1 and (inner := fold(dep)) is not None:
                subs[dep] = inner
        return node.substitute(subs) if subs else node

    folded = {k: fold(k) for k in keys}
    return {k: v for k, v in folded.items() if v is not None}


def fold_inputs(graph: Mapping, keys: list) -> dict:
    """Each key's task with its exclusive upstream tasks nested in it (route ``fold``).

    Only tasks used by this one chunk are folded; shared tasks (a dataframe partition
    that also feeds the weights) and data already in memory (persisted chunks) stay as
    they are. A small shared literal (the opened Zarr array object) is copied into
    every task: as a graph key it would sit on one worker, and the scheduler would
    then run most chunk tasks there.

    Parameters
    ----------
    graph : mapping
        The low-level graph holding ``keys`` (e.g. ``dict(X.__dask_graph__())``).
    keys : list
        Chunk keys one pass reads, each used once by that pass.

    Returns
    -------
    dict
        ``key -> Task`` to embed in the consuming task instead of the key; keys that
        are not tasks (persisted data) are left out and stay references. Empty when
        the route is off: every chunk then stays a reference.
    """
    return _fold(graph, keys) if enabled("fold") else {}


def defer(tasks: list):
    """Wrap a list of folded, self-contained loading tasks (or ``None``) so that the task
    it is an argument of receives them unexecuted (route ``defer``)."""
    from dask._task_spec import DataNode

    return DataNode(None, list(tasks))


def self_contained(folded: Mapping, keys: list) -> bool:
    """Whether every key was folded into a task that needs no other graph key."""
    return all(k in folded and not folded[k].dependencies for k in keys)


def run_deferred(task):
    """Run a task received through :func:`defer` (no dependencies left); ``None`` stays."""
    return None if task is None else task({})


def _row_read(task):
    """``(func, array, rows, rest, kwargs)`` of a folded ``getter(array, index)`` chunk
    read whose index is a plain row slice, else ``None``."""
    from dask._task_spec import DataNode, Task
    from dask.array.core import getter, getter_inline, getter_nofancy

    if (not isinstance(task, Task) or task.func not in (getter, getter_inline, getter_nofancy)
            or len(task.args) != 2 or not all(isinstance(a, DataNode) for a in task.args)):
        return None
    array, index = (a.value for a in task.args)
    if not isinstance(index, tuple) or not index or not isinstance(index[0], slice):
        return None
    rows = index[0]
    if not (isinstance(rows.start, int) and isinstance(rows.stop, int)
            and rows.step in (None, 1) and rows.stop > rows.start):
        return None
    kwargs = task.kwargs
    if any(not isinstance(v, (bool, type(None))) for v in kwargs.values()):
        return None  # a lock or a task in the kwargs: leave it alone
    return task.func, array, rows, index[1:], kwargs


def _read_bytes(array, rows: slice) -> int:
    itemsize = getattr(getattr(array, "dtype", None), "itemsize", 8)
    per_row = 1
    for n in getattr(array, "shape", (0, 1))[1:]:
        per_row *= int(n)
    return (rows.stop - rows.start) * per_row * itemsize


def _extends(run: list, info) -> bool:
    func, array, rows, rest, kwargs = run[-1]
    return (info is not None and info[0] is func and info[1] is array
            and info[2].start == rows.stop and info[3] == rest and info[4] == kwargs)


def _merged(run: list):
    from dask._task_spec import DataNode, Task

    func, array, first, rest, kwargs = run[0]
    rows = slice(first.start, run[-1][2].stop)
    return Task(None, func, DataNode(None, array), DataNode(None, (rows, *rest)), **kwargs)


def coalesce_reads(loaders: list, max_bytes: int, force: bool = False) -> list:
    """Runs of consecutive chunk reads of one array as one read each (route ``batch``).

    Parameters
    ----------
    loaders : list of (x_task, w_task)
        Each chunk's folded, self-contained loading tasks (``w_task`` may be ``None``).
    max_bytes : int
        Largest read of ``X`` rows a run may grow to.
    force : bool
        Coalesce even when the route is off (the route's own probe).

    Returns
    -------
    list of (x_task, w_task, sizes)
        ``sizes`` is ``None`` for a chunk read alone, else the row count of each chunk
        the read covers, in order.
    """
    if not (force or enabled("batch")):
        return [(x, w, None) for x, w in loaders]
    reads, run = [], []  # run: [(x_info, w_info, x_task, w_task)]

    def close():
        if len(run) == 1:
            reads.append((run[0][2], run[0][3], None))
        elif run:
            sizes = tuple(r[0][2].stop - r[0][2].start for r in run)
            wtask = None if run[0][3] is None else _merged([r[1] for r in run])
            reads.append((_merged([r[0] for r in run]), wtask, sizes))
        run.clear()

    for x, w in loaders:
        xi = _row_read(x)
        wi = None if w is None else _row_read(w)
        joinable = xi is not None and (w is None or wi is not None)
        if not joinable:
            close()
            reads.append((x, w, None))
            continue
        grown = (run and _extends([r[0] for r in run], xi)
                 and (w is None) == (run[0][3] is None)
                 and (w is None or _extends([r[1] for r in run], wi))
                 and _read_bytes(xi[1], slice(run[0][0][2].start, xi[2].stop)) <= max_bytes)
        if not grown:
            close()
        run.append((xi, wi, x, w))
    close()
    return reads


def task_with_deferred(key, func: Callable, *args):
    """A graph task ``func(*args)`` whose :func:`defer` arguments arrive as data."""
    from dask._task_spec import Task

    return Task(key, func, *args)


def compute_graph(graph: Mapping, keys: list) -> tuple:
    """Compute ``keys`` of a low-level graph with the active scheduler (route ``graph``).

    The graph is culled first: folded tasks' own keys are not computed.
    """
    from dask.delayed import Delayed
    from dask.optimization import cull

    culled, _ = cull(dict(graph), keys)
    return dask.compute(*[Delayed(key, culled) for key in keys])


_check_versions()
