"""Fold each chunk's loading tasks into the pass task that consumes the chunk.

Out of core, a chunk of ``X`` is the end of a short chain of tasks that only it uses
(read a Zarr chunk, a Parquet row group, convert, slice). Left separate, every loaded
chunk waits in a worker's memory for its consumer, may be copied to another worker,
and costs the scheduler a second task per chunk; with more chunks queued per worker,
peak worker memory grew with the number of rows. Folded into the pass task, a chunk is
read, used and freed inside one task.

Only tasks used by this one chunk are folded; shared tasks (a dataframe partition that
also feeds the weights) and data already in memory (persisted chunks) stay as they are.
A small shared literal (the opened Zarr array object) is copied into every task: as a
graph key it would sit on one worker, and the scheduler would then run most chunk
tasks there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from dask.sizeof import sizeof

try:  # dask's task spec (dask >= 2024.12); without it, passes read chunks as before
    from dask._task_spec import Alias, DataNode, GraphNode, Task
except ImportError:  # pragma: no cover - older dask
    Alias = DataNode = GraphNode = Task = None

INLINE_BYTES = 64 << 10  # shared literals up to this size are copied into each task


def _small_literal(value):
    """A fresh DataNode of ``value`` when it is plain data of at most ``INLINE_BYTES``."""
    if isinstance(value, DataNode):
        value = value.value
    elif isinstance(value, (GraphNode, tuple, list, dict)):  # tasks, aliases, references
        return None
    return DataNode(None, value) if sizeof(value) <= INLINE_BYTES else None


def fold_inputs(graph: Mapping, keys: list) -> dict:
    """Each key's task with its exclusive upstream tasks nested in it.

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
        are not tasks (persisted data) are left out and stay references. An alias of
        a task used by nothing else is replaced by that task.
    """
    if Task is None:
        return {}
    dependents = Counter(dep for node in graph.values() if isinstance(node, GraphNode)
                         for dep in node.dependencies)

    def fold(key):
        node = graph.get(key)
        if isinstance(node, Alias) and len(node.dependencies) == 1:
            (target,) = node.dependencies
            return fold(target) if dependents[target] == 1 else None
        if not isinstance(node, Task):
            return None
        subs = {}
        for dep in node.dependencies:
            if dep not in graph:
                continue
            if (literal := _small_literal(graph[dep])) is not None:
                subs[dep] = literal
            elif dependents[dep] == 1 and (inner := fold(dep)) is not None:
                subs[dep] = inner
        return node.substitute(subs) if subs else node

    folded = {k: fold(k) for k in keys}
    return {k: v for k, v in folded.items() if v is not None}
