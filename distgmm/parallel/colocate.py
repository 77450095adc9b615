"""One pass task per worker thread over the persisted chunks that worker holds.

A pass over persisted data costs the scheduler and the client a few milliseconds per
task, on the same cores the workers compute on: with 8 chunks on two single-threaded
workers, a case-A iteration took 243-247 ms with a task per chunk and 217-227 ms with
one task per worker. Grouping the chunks each worker already holds gives the second
figure whatever the user's chunking, without moving any data. Chunks beyond a worker's
fair share keep a task each, so the scheduler can still even out a lopsided placement
(case A full, 8 chunks placed 4/4, 5/3 and 8/0: 0.235, 0.264 and 0.262 s per
iteration grouped, against 0.251, 0.289 and 0.283 s with a task per chunk).

The groups change who combines what, never what is combined: every group returns the
nodes of the pass's reduction tree it could complete on its own
(:func:`distgmm.parallel.reduction.fold_tree`), and the driver completes the rest, so
the result has the same bits as a task per chunk and as the numpy engine.

The placement costs two scheduler round trips (``who_has``, ``nthreads``: about 5 ms
here, on every pass's critical path), so it is asked for once per ``PLACEMENT_TTL``
seconds per set of chunks. A chunk that moves in between (a worker lost, a rebalance)
is fetched by its group's task: the result is the same, only locality is lost until
the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

PLACEMENT_TTL = 10.0
_placements: dict[tuple, tuple[float, list[list[int]]]] = {}


def colocated_groups(graph: Mapping, keys: list, also: list = ()) -> list[list[int]] | None:
    """Positions in ``keys`` grouped by the worker thread that holds those chunks.

    Parameters
    ----------
    graph : mapping
        The pass's input graph; persisted chunks appear in it as ``distributed.Future``.
    keys : list
        The chunk keys of the pass, in pass order.
    also : list
        Keys of other inputs of the pass (sample weights) that must be persisted too.

    Returns
    -------
    list of list of int, or None
        Ascending lists of positions. Each worker's thread gets one group of at most
        a fair share (``ceil(chunks / threads in the cluster)``) of the chunks that
        worker holds; chunks beyond a worker's fair share are groups of one, which the
        scheduler may move to an idle worker (persist placed 5 and 3 of 8 chunks on
        two workers in one of five tries here; the module docstring gives the times).
        None when a chunk (or an input in ``also``) is not a finished future of the
        client that runs the pass (not persisted, not yet computed, or another
        scheduler is active): then every chunk keeps its own task.
    """
    try:
        from distributed import Future
    except ImportError:  # pragma: no cover - dask without distributed
        return None
    futures = [graph.get(k) for k in keys]
    others = [graph.get(k) for k in also]
    if not futures or not all(isinstance(f, Future) for f in futures + others):
        return None
    client = futures[0].client
    if not client_is_active(client) or any(
        f.status != "finished" or f.client is not client for f in futures + others
    ):
        return None
    cache_key = (client.id, tuple(f.key for f in futures))
    now = time.monotonic()
    hit = _placements.get(cache_key)
    if hit is not None and now - hit[0] < PLACEMENT_TTL:
        return [list(g) for g in hit[1]]
    groups = _groups_by_holder(client, futures)
    if groups is not None:
        if len(_placements) > 64:
            _placements.clear()
        _placements[cache_key] = (now, [list(g) for g in groups])
    return groups


def active_client():
    """The ``distributed.Client`` that ``dask.compute`` would run on now, or None."""
    import dask

    chosen = dask.config.get("scheduler", None)
    if chosen is not None and hasattr(chosen, "nthreads") and hasattr(chosen, "get"):
        return chosen
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):  # no distributed, or no client at all
        return None
    return client if client_is_active(client) else None


def client_is_active(client) -> bool:
    """Whether ``dask.compute`` would run on ``client`` now.

    Public APIs only, in the order dask itself decides: a scheduler
    set in ``dask.config`` (a name, a function, a client) wins; otherwise, as with
    ``"dask.distributed"``, the default client of this process (or of this task).

    Parameters
    ----------
    client : distributed.Client

    Returns
    -------
    bool
    """
    import dask
    from distributed import get_client

    chosen = dask.config.get("scheduler", None)
    if chosen is client:
        return True
    if callable(chosen):
        return chosen == client.get
    if chosen is not None and str(chosen).lower() not in ("dask.distributed", "distributed"):
        return False  # "threads", "sync", "processes", an executor
    try:
        return get_client() is client
    except ValueError:  # no client at all
        return False


def _groups_by_holder(client, futures: list) -> list[list[int]] | None:
    who = client.who_has(futures)
    holders = [who.get(f.key) for f in futures]
    if not all(holders):
        return None
    threads = client.nthreads()
    fair = -(-len(futures) // max(1, sum(threads.values())))
    by_worker: dict[str, list[int]] = {}
    for position, addresses in enumerate(holders):
        by_worker.setdefault(sorted(addresses)[0], []).append(position)
    groups = []
    for worker, positions in by_worker.items():
        n_threads = max(1, threads.get(worker, 1))
        grouped, extra = positions[: fair * n_threads], positions[fair * n_threads :]
        n = min(n_threads, len(grouped))
        cuts = [len(grouped) * i // n for i in range(n + 1)]
        groups += [grouped[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        groups += [[j] for j in extra]
    return groups


SPREAD_ABOVE = 1.2
"""A worker thread holding more than this times its share of the rows starts a move."""


def spread_targets(holders: list, rows: list[int],
                   threads: Mapping[str, int]) -> list[str] | None:
    """The worker each chunk should live on so each worker thread holds about an equal
    share of the rows, moving as few chunks as possible; None when the chunks can stay
    with no worker thread holding more than ``SPREAD_ABOVE`` times its share.

    A chunk stays on a holder while at least half of it fits in that holder's share
    (chunks with replicas last, each on its holder with the most room), and a chunk
    over two shares stays on a holder that has nothing else (it fits nowhere better);
    the others go, largest first, to the worker with the most room left.

    Parameters
    ----------
    holders : list of collections of str
        The workers holding each chunk.
    rows : list of int
        Each chunk's rows.
    threads : mapping
        Each worker's threads.
    """
    total_threads = sum(threads.values())
    total = sum(rows)
    if total_threads == 0 or total == 0:
        return None
    quota = {w: total * n / total_threads for w, n in threads.items() if n > 0}
    targets: list[str | None] = [None] * len(rows)
    load = dict.fromkeys(quota, 0.0)
    # chunks with one holder first: replicas then go where there is room
    for i in sorted(range(len(rows)), key=lambda i: len(set(holders[i]) & quota.keys())):
        room = [w for w in sorted(holders[i]) if w in quota  # (a chunk over 2 shares
                and (load[w] + rows[i] / 2 <= quota[w]  # stays: it cannot fit anywhere)
                     or (load[w] == 0 and rows[i] > 2 * quota[w]))]
        if room:
            w = max(room, key=lambda w: quota[w] - load[w])
            targets[i], load[w] = w, load[w] + rows[i]
    if all(t is not None for t in targets):
        return None  # every chunk stays within half a chunk of its holder's share
    # as they are, the chunks that cannot stay count on a holder of theirs
    now = dict(load)
    for held, n, t in zip(holders, rows, targets):
        if t is None:
            w = next((w for w in sorted(held) if w in quota), None)
            if w is None:
                break  # held by no worker of the cluster: it must move
            now[w] += n
    else:
        if max(now[w] / quota[w] for w in quota) <= SPREAD_ABOVE:
            return None  # a little uneven (chunks of unequal rows): not worth a move
    for i in sorted((i for i, t in enumerate(targets) if t is None), key=lambda i: -rows[i]):
        w = max(sorted(quota), key=lambda w: quota[w] - load[w])
        targets[i], load[w] = w, load[w] + rows[i]
    return targets  # type: ignore[return-value]


def _same(chunk):
    return chunk


def spread_persisted(arrays: list):
    """Dask arrays that distgmm just persisted, with their row chunks moved so that
    each worker thread holds about an equal share (:func:`spread_targets`); chunk ``i``
    of every array goes where chunk ``i`` of the first goes. The arrays as given when
    they are balanced already, not all persisted on the active client, or failed.

    One read that is cut into several chunks (a huge Parquet row group, a rechunk of
    one big chunk) leaves all of them on the worker that read it: a case-A iteration
    then took 0.159 s with 7 of 8 chunks on one of two workers, against 0.121 s for
    a layout that persists spread. Chunks move once, by a task restricted (loosely:
    if the worker is lost, any other recomputes it) to the target worker; chunks that
    stay get such a task on their holder, which copies nothing, so every chunk of the
    result has a key of the new array.
    """
    from dask.tokenize import tokenize
    from distributed import Future, wait

    client = active_client()
    if client is None:
        return arrays
    futures = []
    for a in arrays:
        graph = a.__dask_graph__()
        futures.append([graph.get(k) for k in _row_keys(a)])
    flat = [f for fs in futures for f in fs]
    if not flat or not all(isinstance(f, Future) and f.client is client for f in flat):
        return arrays
    with client.as_current():  # wait() asks default_client(): maybe none, or another
        wait(flat)
    if any(f.status != "finished" for f in flat):
        return arrays  # the pass reports the error, as without the move
    who = client.who_has(futures[0])
    holders = [set(who.get(f.key) or ()) for f in futures[0]]
    targets = spread_targets(holders, list(arrays[0].chunks[0]), client.nthreads())
    if targets is None:
        return arrays
    import dask.array as da

    moved = []
    for a, fs in zip(arrays, futures):
        name = f"spread-{tokenize(a.name, targets)}"
        keys = [(name, i, *(0,) * (a.ndim - 1)) for i in range(len(fs))]
        new: list = [None] * len(fs)
        for w in sorted(set(targets)):
            mine = [i for i, t in enumerate(targets) if t == w]
            for i, f in zip(mine, client.map(_same, [fs[i] for i in mine],
                                              key=[keys[i] for i in mine], workers=[w],
                                              allow_other_workers=True, pure=False)):
                new[i] = f
        moved.append(da.Array(dict(zip(keys, new)), name, a.chunks, dtype=a.dtype))
    with client.as_current():
        wait([f for a in moved for f in a.__dask_graph__().values()])
    return moved


def _row_keys(a) -> list:
    """The keys of ``a``'s row chunks (features in one chunk)."""
    keys = a.__dask_keys__()
    return [k[0] if isinstance(k, list) else k for k in keys]
