"""Why workers died: a KilledWorker whose workers ran out of memory is a memory sizing
failure (exit 78), not a retryable one (75).

Two witnesses, both read through public ``Client`` calls:

- the nanny's memory monitor, which logs ``worker-restart-memory`` on the scheduler
  before it terminates a worker over its ``--memory-limit``
  (``Client.get_events``);
- the kernel's out-of-memory killer, which leaves no event but counts its kills in the
  memory cgroup of the worker's container (``oom_kill`` in ``memory.events`` for cgroup
  v2, ``memory.oom_control`` for v1). Each nanny reads its own cgroup
  (``Client.run(..., nanny=True)``, bounded in time) when a fit starts; after a
  KilledWorker, the nanny of the worker that died last (``KilledWorker.last_worker``)
  reads it again, and a count that grew means the kernel killed a process in that
  worker's cgroup. A SIGKILL from anyone else (an operator, a preempted node) leaves
  the count alone and stays retryable (75).

Limits: the cgroup is the one the nanny lives in, so a kill of another process sharing
it counts too; and the nanny must survive its worker's death. Where the kernel kills
the whole container (Kubernetes with ``memory.oom.group``), the count starts again at
zero and the failure stays a 75: give ``dask worker --memory-limit`` a value below the
container's limit, so that the nanny restarts the worker first (then it is a 78).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from .failures import MEMORY_KNOBS, MemorySizingError, chain

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_counter(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def cgroup_oom_kills(proc_cgroup: str = "/proc/self/cgroup",
                     root: Path = CGROUP_ROOT) -> tuple[str, int] | None:
    """(host and cgroup, OOM kills counted there) for this process, ``None`` where
    unreadable.

    Runs on a nanny. cgroup v2 (``0::/path``) counts in ``memory.events`` (hierarchical:
    the worker the nanny started lives in the same or a child cgroup); v1
    (``N:...memory...:/path``) in ``memory.oom_control``. Inside a cgroup namespace the
    path is ``/`` and the mount shows the container's own cgroup. The key is the host
    and cgroup, not the worker's address, which changes when the nanny restarts it.
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if controllers == "" and (root / "cgroup.controllers").exists():
            found = _cgroup_counter(root / rel / "memory.events", "oom_kill")
        elif "memory" in controllers.split(","):
            found = _cgroup_counter(root / "memory" / rel / "memory.oom_control", "oom_kill")
        else:
            continue
        if found is not None:
            return f"{socket.gethostname()}:{path}", found
    return None


def _nanny_oom_kills(dask_worker=None):
    """On a nanny: ``(its address, cgroup, OOM kills)``, or None where unreadable."""
    found = cgroup_oom_kills()
    address = getattr(dask_worker, "address", None)
    return None if found is None or address is None else (address, *found)


RUN_TIMEOUT = 5.0


def oom_kills(client, timeout: float = RUN_TIMEOUT) -> dict[str, tuple[str, int]]:
    """nanny address -> (cgroup, OOM kills) for every nanny that can tell, asked for at
    most ``timeout`` seconds (a nanny on a host that dropped off the network would
    otherwise hold up the job's start: the stall watchdog is not running yet)."""
    answer: list = []

    def ask():
        try:
            answer.append(client.run(_nanny_oom_kills, nanny=True, on_error="return"))
        except Exception:  # no nannies, or the scheduler is gone: nothing to learn
            pass

    # a daemon thread: one left waiting on a dead host must not hold up the exit
    asking = threading.Thread(target=ask, name="distgmm-oom", daemon=True)
    asking.start()
    asking.join(timeout)
    if not answer:
        return {}
    return {v[0]: (v[1], v[2]) for v in answer[0].values()
            if isinstance(v, tuple) and len(v) == 3}


def restarted_for_memory(client, since: float) -> list[dict]:
    """Nanny memory restarts logged on the scheduler since ``since`` (epoch seconds)."""
    try:
        events = client.get_events("worker-restart-memory")
    except Exception:  # the scheduler is gone: nothing to learn
        return []
    return [msg for t, msg in events if t >= since and isinstance(msg, dict)]


def new_oom_kills(before: dict, after: dict, nanny: str | None) -> int:
    """Kills ``nanny``'s cgroup counted since ``before`` (0 when it cannot tell: an
    unknown nanny, another cgroup, or a counter that started again)."""
    if nanny is None or nanny not in before or nanny not in after:
        return 0
    (where, n0), (where1, n1) = before[nanny], after[nanny]
    return n1 - n0 if where1 == where and n1 > n0 else 0


def _after_restart(client, nanny: str | None, wait: float = 15.0) -> dict:
    """The counts again, once ``nanny`` answers (a nanny whose worker is restarting is
    not reachable through ``Client.run`` until the new worker registers)."""
    deadline = time.monotonic() + (wait if nanny is not None else 0.0)
    while True:
        after = oom_kills(client)
        if nanny is None or nanny in after or time.monotonic() >= deadline:
            return after
        time.sleep(0.5)


def memory_sizing_error(client, exc: BaseException, since: float, oom_before: dict,
                        chunk_bytes: int | None) -> BaseException:
    """A :class:`MemorySizingError` for a KilledWorker whose workers died of memory,
    else ``exc`` itself."""
    from dask.utils import format_bytes
    from distributed.scheduler import KilledWorker

    killed = next((link for link in chain(exc) if isinstance(link, KilledWorker)), None)
    if killed is None:
        return exc
    chunk = f"chunks of {format_bytes(chunk_bytes)}" if chunk_bytes else "its chunks"
    deaths = restarted_for_memory(client, since)
    if deaths:
        worst = max(deaths, key=lambda m: m.get("rss", 0))
        return MemorySizingError(
            f"workers were killed for exceeding their memory limit ({len(deaths)} "
            f"restart(s), {worst.get('worker')} at {format_bytes(worst.get('rss', 0))}) "
            f"while processing {chunk}: a retry fails the same way; {MEMORY_KNOBS}")
    last = getattr(killed, "last_worker", None)
    nanny = getattr(last, "nanny", None) if oom_before else None
    kills = new_oom_kills(oom_before, _after_restart(client, nanny), nanny)
    if kills:
        return MemorySizingError(
            f"worker {getattr(last, 'address', '?')} was killed by the kernel's "
            f"out-of-memory killer ({kills} kill(s) in cgroup {oom_before[nanny][0]}) "
            f"while processing {chunk}: the container's memory is smaller than the "
            f"worker's --memory-limit lets it use, and a retry fails the same way; "
            f"{MEMORY_KNOBS}, and set dask worker --memory-limit below the container's "
            "memory")
    return exc


@contextlib.contextmanager
def diagnosed(client, chunk_bytes: int | None):
    """Re-raise a KilledWorker whose workers died of memory as a MemorySizingError."""
    since, oom_before = time.time() - 1.0, oom_kills(client)
    try:
        yield
    except Exception as e:
        better = memory_sizing_error(client, e, since, oom_before, chunk_bytes)
        if better is e:
            raise
        raise better from e
