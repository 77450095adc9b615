"""Several fits sharing every pass over the data.

Each candidate (a restart, or one ``n_components``/``covariance_type`` of a sweep) runs
its ordinary code -- initialiser and EM loop -- in a thread, against a proxy of the
data whose ``map_reduce`` does not compute: it posts the request and waits. When every
live candidate is waiting, the hub runs ONE pass in which each chunk task applies all
posted requests to the same block, then hands each candidate its own result.
Candidates that finish (converged, or failed) drop out; the rest go on together.

Each candidate's statistics come from the same chunk function, the same blocks and the
same reduction tree as in a separate fit, so its result is the same, bit for bit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .blocks import Blocks


class _Requests:
    """The posted requests, opaque to dask (a bare tuple of a callable and arguments
    would be taken for a task and run by the scheduler)."""

    def __init__(self, items: list):
        self.items = items

    def __call__(self, X, w, row_start):
        out = []
        for fn, _, args in self.items:
            try:
                out.append(fn(X, w, row_start, *args))
            except Exception as e:  # this candidate's failure, not the others'
                out.append(_Failed(e))
        return out


class _Failed:
    """A candidate's error inside a shared pass, carried to that candidate alone."""

    def __init__(self, error: BaseException):
        self.error = error


def _all_requests(X, w, row_start, requests: _Requests):
    return requests(X, w, row_start)


class _CombineAll:
    """Picklable element-wise combine of per-request results."""

    def __init__(self, combines):
        self.combines = combines

    def __call__(self, a, b):
        return [x if isinstance(x, _Failed) else y if isinstance(y, _Failed) else c(x, y)
                for c, x, y in zip(self.combines, a, b)]


class _Proxy:
    """What a candidate sees: the data, with passes routed through the hub."""

    def __init__(self, hub: _Hub, base: Blocks, slot: int):
        self._hub, self._base, self._slot = hub, base, slot

    def map_reduce(self, fn: Callable, combine: Callable, *args):
        return self._hub.request(self._slot, fn, combine, args)

    def __getattr__(self, name):
        return getattr(self._base, name)


@dataclass
class Outcome:
    """A candidate's result, or the exception that ended it."""

    value: object = None
    error: BaseException | None = None


class _Hub:
    def __init__(self, base: Blocks, n: int):
        self.base = base
        self.cond = threading.Condition()
        self.pending: dict[int, tuple] = {}
        self.results: dict[int, object] = {}
        self.live = set(range(n))
        self.passes = 0
        self.abort: BaseException | None = None

    def request(self, slot: int, fn, combine, args):
        with self.cond:
            if self.abort is not None:
                raise _Aborted()
            self.pending[slot] = (fn, combine, args)
            self.cond.notify_all()
            while slot not in self.results:
                if self.abort is not None:
                    raise _Aborted()
                self.cond.wait()
            result = self.results.pop(slot)
        if isinstance(result, _Failed):
            raise self.base.explain(result.error)
        return result

    def finished(self, slot: int) -> None:
        with self.cond:
            self.live.discard(slot)
            self.cond.notify_all()

    def serve(self) -> None:
        """Run passes until every candidate has finished."""
        while True:
            with self.cond:
                while self.live and self.abort is None and len(self.pending) < len(self.live):
                    self.cond.wait()
                if not self.live or self.abort is not None:
                    return
                batch = sorted(self.pending.items())
                self.pending.clear()
            try:
                requests = [req for _, req in batch]
                out = self.base.map_reduce(
                    _all_requests, _CombineAll([c for _, c, _ in requests]),
                    _Requests(requests))
                self.passes += 1
            except BaseException as e:
                with self.cond:
                    self.abort = e
                    self.cond.notify_all()
                raise
            with self.cond:
                for (slot, _), value in zip(batch, out):
                    self.results[slot] = value
                self.cond.notify_all()


class _Aborted(Exception):
    pass


def run_lockstep(blocks: Blocks, tasks: Sequence[Callable[[Blocks], object]], *,
                 fail_fast: bool = True) -> tuple[list[Outcome], int]:
    """Run ``task(blocks)`` for every task, sharing each pass over the data.

    Parameters
    ----------
    blocks : Blocks
    tasks : sequence of callables
        Each receives a proxy of ``blocks`` and returns its result.
    fail_fast : bool
        Re-raise the first candidate's exception (after stopping the others);
        otherwise record it in that candidate's :class:`Outcome`.

    Returns
    -------
    outcomes : list of Outcome
        In the order of ``tasks``.
    passes : int
        Passes over the data made for all of them together.
    """
    hub = _Hub(blocks, len(tasks))
    outcomes = [Outcome() for _ in tasks]

    def work(slot: int, task) -> None:
        try:
            outcomes[slot].value = task(_Proxy(hub, blocks, slot))
        except _Aborted:
            pass
        except BaseException as e:  # recorded; re-raised below if fail_fast
            outcomes[slot].error = e
            if fail_fast:
                with hub.cond:
                    hub.abort = e
                    hub.cond.notify_all()
        finally:
            hub.finished(slot)

    threads = [threading.Thread(target=work, args=(i, t), daemon=True,
                                name=f"distgmm-candidate-{i}") for i, t in enumerate(tasks)]
    for t in threads:
        t.start()
    try:
        hub.serve()
    except BaseException as e:  # a failed pass, or Ctrl-C while waiting: stop everyone
        with hub.cond:
            hub.abort = hub.abort or e
            hub.cond.notify_all()
        raise
    finally:
        for t in threads:
            t.join()
    if fail_fast:
        for o in outcomes:
            if o.error is not None:
                raise o.error
    return outcomes, hub.passes
