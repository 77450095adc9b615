"""Why workers died: a KilledWorker whose workers ran out of memory is a memory sizing
failure (exit 78), not a retryable one (75).

Two witnesses, both read through public ``Client`` calls:

- the nanny's memory monitor, which logs ``worker-restart-memory`` on the scheduler
  before it terminates a worker over its ``--memory-limit``
  (``Client.get_events``);
- the kernel's out-of-memory killer, which leaves no event but counts its kills in the
  memory cgroup of the worker's container (``oom_kill`` in ``memory.events`` for cgroup
  v2, ``memory.oom_control`` for v1). Each nanny reads its own cgroup
  (``Client.run(..., nanny=True)``) when a fit starts and again after a KilledWorker;
  a count that grew means the kernel killed a process there. A SIGKILL from anyone
  else (an operator, a preempted node) leaves the count alone and stays retryable.
"""

from __future__ import annotations

import contextlib
import socket
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


def oom_kills(client) -> dict[str, int]:
    """OOM kills per host and cgroup of the nannies (those that cannot tell left out)."""
    try:
        counts = client.run(cgroup_oom_kills, nanny=True, on_error="return")
    except Exception:  # no nannies, or the scheduler is gone: nothing to learn
        return {}
    return dict(v for v in counts.values() if isinstance(v, tuple) and len(v) == 2)


def restarted_for_memory(client, since: float) -> list[dict]:
    """Nanny memory restarts logged on the scheduler since ``since`` (epoch seconds)."""
    try:
        events = client.get_events("worker-restart-memory")
    except Exception:  # the scheduler is gone: nothing to learn
        return []
    return [msg for t, msg in events if t >= since and isinstance(msg, dict)]


def _new_oom_kills(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {a: n - before[a] for a, n in after.items() if a in before and n > before[a]}


def _after_restarts(client, before: dict[str, int], wait: float = 15.0) -> dict[str, int]:
    """The counts again, once the nannies that reported before are back (a nanny whose
    worker is restarting is not reachable through ``Client.run`` until it registers)."""
    deadline = time.monotonic() + (wait if before else 0.0)
    while True:
        after = oom_kills(client)
        if set(before) <= set(after) or time.monotonic() >= deadline:
            return after
        time.sleep(0.5)


def memory_sizing_error(client, exc: BaseException, since: float,
                        oom_before: dict[str, int],
                        chunk_bytes: int | None) -> BaseException:
    """A :class:`MemorySizingError` for a KilledWorker whose workers died of memory,
    else ``exc`` itself."""
    from dask.utils import format_bytes
    from distributed.scheduler import KilledWorker

    if not any(isinstance(link, KilledWorker) for link in chain(exc)):
        return exc
    chunk = f"chunks of {format_bytes(chunk_bytes)}" if chunk_bytes else "its chunks"
    deaths = restarted_for_memory(client, since)
    if deaths:
        worst = max(deaths, key=lambda m: m.get("rss", 0))
        return MemorySizingError(
            f"workers were killed for exceeding their memory limit ({len(deaths)} "
            f"restart(s), {worst.get('worker')} at {format_bytes(worst.get('rss', 0))}) "
            f"while processing {chunk}: a retry fails the same way; {MEMORY_KNOBS}")
    kills = _new_oom_kills(oom_before, _after_restarts(client, oom_before))
    if kills:
        where = ", ".join(f"{n} in cgroup {a}" for a, n in sorted(kills.items()))
        return MemorySizingError(
            f"workers were killed by the kernel's out-of-memory killer ({where}) while "
            f"processing {chunk}: the container's memory is smaller than the worker's "
            f"--memory-limit lets it use, and a retry fails the same way; {MEMORY_KNOBS}, "
            "and set dask worker --memory-limit below the container's memory")
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
