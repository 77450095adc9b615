"""Exit classes, signals, publish recovery and races, the job lease, the watchdog.

The classifier table is checked against real exceptions (OSError from the OS, Dask's
own KilledWorker); publication and the lease against real local and memory://
filesystems; the watchdog against a real scheduler without workers.
"""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from distgmm.io.interrupts import Interrupted, critical, handle_signals
from distgmm.io.publish import SUCCESS, AlreadyPublished, Publication, sweep_stale
from distgmm.jobs import failures
from distgmm.jobs.events import Reporter
from distgmm.jobs.failures import (
    ClusterStalled,
    Failure,
    MemorySizingError,
    classify,
    io_path,
)
from distgmm.jobs.lease import AlreadyRunning, Lease, sweep_checkpoint_temps


def os_error(code, path=None):
    """The OSError the OS itself raises for ``code`` (errno -> subclass mapping)."""
    return OSError(code, os.strerror(code), *([path] if path else []))


@pytest.mark.parametrize("code, cause", [
    (errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
    (errno.EACCES, "permission denied"), (errno.EDQUOT, "quota")])
def test_os_errors_are_io_failures_naming_the_path(code, cause):
    exc = os_error(code, "/lake/out/.x.staging-1/model.json")
    assert isinstance(exc, OSError) and exc.errno == code
    failure = classify(exc)
    assert failure.code == failures.EXIT_IO == 74
    assert "/lake/out/.x.staging-1/model.json" in failure.message
    assert cause in failure.message and errno.errorcode[code] in failure.message
    assert "\n" not in failure.message


def test_a_full_disk_wrapped_in_a_value_error_is_still_io():
    try:
        try:
            raise os_error(errno.ENOSPC, "/tmp/x")
        except OSError as e:
            raise ValueError("cannot write the chunk") from e
    except ValueError as e:
        assert classify(e).code == 74


def test_io_path_names_a_path_the_os_did_not():
    with pytest.raises(OSError) as info, io_path("/lake/out"):
        raise os_error(errno.ENOSPC)
    assert classify(info.value).message.startswith("I/O error on /lake/out:")


def test_exit_classes_of_the_other_failures():
    from distributed.scheduler import KilledWorker

    from distgmm.jobs.cluster import ClusterUnavailable

    killed = KilledWorker("task", type("W", (), {"address": "tcp://w"})(), 3)
    assert classify(killed).code == 75
    assert classify(ClusterUnavailable("cannot reach")).code == 75
    assert classify(ClusterStalled("no progress")).code == 75
    assert classify(MemorySizingError("paused")).code == 78
    assert classify(Interrupted(signal.SIGTERM)).code == 143
    assert classify(Interrupted(signal.SIGINT)).code == 130
    assert classify(KeyboardInterrupt()).code == 130
    assert classify(AlreadyRunning("held by pid 1")).code == 0
    assert classify(AlreadyPublished("/out is already published by this job")).code == 0
    assert classify(FileNotFoundError("no input")).code == 2
    assert classify(ValueError("bad k")).code == 2
    assert classify(RuntimeError("a bug")) is None  # traceback, exit 1


def test_one_more_classifier_plugs_in_with_one_line(monkeypatch):
    class StoreDown(Exception):
        pass

    monkeypatch.setattr(failures, "CLASSIFIERS", list(failures.CLASSIFIERS))
    assert classify(StoreDown("endpoint")) is None
    failures.CLASSIFIERS.append(lambda e: Failure(75, "store down") if isinstance(
        e, StoreDown) else None)
    assert classify(StoreDown("endpoint")) == Failure(75, "store down")


def test_a_signal_inside_a_critical_section_waits_for_its_end():
    done = []
    with pytest.raises(Interrupted) as info, handle_signals():
        with critical():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler ran here and held the signal
            done.append(True)
    assert done == [True] and info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_after_a_signal_the_loop_s_callback_errors_stay_quiet_until_the_run_ends():
    # distributed's sync() cancel() can raise NameError on the loop after an interrupt;
    # tornado would print its traceback after the one-line error
    import logging

    from distgmm.io.interrupts import TORNADO_CALLBACKS

    callbacks = logging.getLogger(TORNADO_CALLBACKS)
    assert not callbacks.disabled
    with pytest.raises(Interrupted), handle_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
    assert not callbacks.disabled  # restored when the signals are
    quiet = []
    with pytest.raises(Interrupted), handle_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        except Interrupted:
            quiet.append(callbacks.disabled)
            raise
    assert quiet == [True] and not callbacks.disabled


def _publish(url, job, files=("metrics.json",), fs_kwargs=None, **kw):
    pub = Publication(url, job=job, **kw)
    with pub:
        for name in files:
            pub.fs.pipe_file(f"{pub.staging}/{name}",
                             json.dumps({"job": {"fingerprint": job}}).encode())
    return pub


@pytest.mark.parametrize("root", ["local", "memory"])
def test_an_unpublished_output_of_the_same_job_is_replaced(tmp_path, root):
    import fsspec

    url = str(tmp_path / "out") if root == "local" else f"memory://{tmp_path.name}/out"
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path, exist_ok=True)  # an interrupted copy: metrics but no _SUCCESS
    fs.pipe_file(f"{path}/metrics.json", json.dumps({"job": {"fingerprint": "J"}}).encode())
    fs.pipe_file(f"{path}/half.bin", b"x")
    _publish(url, "J")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(path)) == [SUCCESS, "metrics.json"]
    assert json.loads(fs.cat_file(f"{path}/{SUCCESS}"))["job"] == "J"
    assert fs.glob(f"{path.rsplit('/', 1)[0]}/.out.*") == []
    # another job's unpublished leftover is not ours to replace
    fs.rm(f"{path}/{SUCCESS}")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        _publish(url, "K")


def test_losing_the_publish_race_to_the_same_job_is_already_published(tmp_path):
    url = str(tmp_path / "out")
    pub = Publication(url, job="J")
    with pytest.raises(AlreadyPublished), pub:
        pub.fs.pipe_file(f"{pub.staging}/metrics.json", b"{}")
        _publish(url, "J")  # the other run publishes while this one writes
    assert os.listdir(tmp_path) == ["out"]  # our staging is gone, theirs published
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        _publish(url, "K")


def test_sweep_removes_only_this_outputs_leftovers(tmp_path):
    for name in (".out.staging-abc", ".out.old-def", ".other.staging-1", "out2"):
        (tmp_path / name).mkdir()
    (tmp_path / ".out.staging-abc" / "part").write_text("x")
    (tmp_path / "..out.checkpoint.json.0123abcd").write_text("{")
    (tmp_path / ".out.checkpoint.json").write_text("{}")
    removed = sweep_stale(str(tmp_path / "out"))
    removed += sweep_checkpoint_temps(str(tmp_path / ".out.checkpoint.json"))
    assert len(removed) == 3
    assert sorted(os.listdir(tmp_path)) == [".other.staging-1", ".out.checkpoint.json",
                                            "out2"]


@pytest.mark.parametrize("root", ["local", "memory"])
def test_a_live_lease_blocks_a_second_run_and_is_released(tmp_path, root):
    url = (str(tmp_path / ".out.lease.json") if root == "local"
           else f"memory://{tmp_path.name}/.out.lease.json")
    first, second = Lease(url, "J", ttl=30), Lease(url, "J", ttl=30)
    first.acquire(0, Reporter(quiet=True))
    assert not second.try_acquire()
    t0 = time.monotonic()
    with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()} on {socket.gethostname()}"):
        second.acquire(0.5, Reporter(quiet=True))
    assert 0.4 < time.monotonic() - t0 < 5
    first.release()
    assert first.read() is None
    second.acquire(0, Reporter(quiet=True))
    second.release()


def test_a_dead_holders_lease_is_taken_over(tmp_path):
    url = str(tmp_path / ".out.lease.json")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Lease(url, "J")._write()  # a lease of this process, rewritten as the dead one's
    doc = json.loads(open(url).read())
    doc["pid"] = dead.pid
    open(url, "w").write(json.dumps(doc))
    assert Lease(url, "J").try_acquire()  # same host, no such process: free at once
    doc.update(host="elsewhere", heartbeat=time.time() - 31, ttl=30)
    open(url, "w").write(json.dumps(doc))
    assert Lease(url, "J").try_acquire()  # another host, heartbeat too old: expired
    doc.update(heartbeat=time.time())
    open(url, "w").write(json.dumps(doc))
    assert not Lease(url, "J").try_acquire()


def test_the_heartbeat_keeps_a_short_lease_alive(tmp_path):
    url = str(tmp_path / ".out.lease.json")
    holder = Lease(url, "J", ttl=0.8)
    holder.acquire(0, Reporter(quiet=True))
    time.sleep(1.6)  # two ttls: only the heartbeat keeps it
    assert not Lease(url, "J", ttl=0.8).try_acquire()
    holder.release()


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_watchdog_says_no_workers_and_stops_the_pass(sigint):
    """Also when SIGINT is ignored, as for a job a script starts in the background
    (the watchdog stops the driver's wait by signalling its main thread)."""
    import io
    import signal

    from distributed import Client, LocalCluster

    from distgmm.jobs.watchdog import watched

    stream = io.StringIO()
    stall = 1.5  # the watchdog's line comes after max(1 s, stall / 3), before it stops
    before = signal.getsignal(signal.SIGINT)
    if sigint == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            t0 = time.monotonic()
            with pytest.raises(ClusterStalled, match="no workers are connected") as info, \
                    watched(client, Reporter(stream=stream), stall_timeout=stall):
                client.submit(sum, [1, 2]).result(timeout=60)
            elapsed = time.monotonic() - t0
        assert signal.getsignal(signal.SIGINT) == (
            signal.SIG_IGN if sigint == "ignored" else before)  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    print(f"no workers: stopped after {elapsed:.1f} s (stall timeout {stall} s)")
    assert elapsed < stall + 15
    assert classify(info.value).code == 75
    assert "waiting for workers: no workers are connected" in stream.getvalue()


def test_a_chunk_no_worker_can_hold_is_refused(client):
    from distgmm.jobs.watchdog import check_chunk_fits

    limit = min(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
    check_chunk_fits(client, limit // 4)
    with pytest.raises(MemorySizingError, match="--chunk-size") as info:
        check_chunk_fits(client, limit)
    assert classify(info.value).code == 78


def test_the_checkpoint_and_lease_can_live_elsewhere():
    from distgmm.jobs.lease import lease_url
    from distgmm.jobs.load import checkpoint_url

    assert checkpoint_url("/lake/a/2026") == "/lake/a/.2026.checkpoint.json"
    a = checkpoint_url("/lake/a/2026", "/state/")
    b = checkpoint_url("/lake/b/2026", "/state")
    assert a.startswith("/state/.2026-") and a.endswith(".checkpoint.json")
    assert a != b  # two outputs with one name do not share a checkpoint
    assert lease_url(a) == a.removesuffix(".checkpoint.json") + ".lease.json"


def test_cgroup_oom_kills_reads_v1_and_v2_counters(tmp_path):
    from distgmm.jobs.memory_deaths import cgroup_oom_kills, new_oom_kills

    v2 = tmp_path / "v2"
    (v2 / "kubepods" / "pod1").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v2 / "kubepods" / "pod1" / "memory.events").write_text(
        "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    proc = tmp_path / "proc-v2"
    proc.write_text("0::/kubepods/pod1\n")
    where, n = cgroup_oom_kills(str(proc), v2)
    assert where.endswith(":/kubepods/pod1") and n == 2

    v1 = tmp_path / "v1"
    (v1 / "memory" / "job").mkdir(parents=True)
    (v1 / "memory" / "job" / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    proc.write_text("9:name=systemd:/\n4:memory:/job\n0::/\n")  # hybrid host
    assert cgroup_oom_kills(str(proc), v1)[1] == 3
    proc.write_text("4:cpu,cpuacct:/\ngarbage\n")  # no memory controller: cannot tell
    assert cgroup_oom_kills(str(proc), v1) is None
    assert cgroup_oom_kills(str(tmp_path / "missing"), v1) is None
    # only the dead worker's nanny's count, grown in the same cgroup, counts: not a kill
    # elsewhere, not a new nanny, not a counter that started again (a new container)
    before = {"n1": ("h:/a", 1), "n2": ("h:/b", 0)}
    after = {"n1": ("h:/a", 1), "n2": ("h:/b", 2), "n3": ("h:/c", 5)}
    assert new_oom_kills(before, after, "n2") == 2
    assert new_oom_kills(before, after, "n1") == 0
    assert new_oom_kills(before, after, "n3") == 0 and new_oom_kills(before, after, None) == 0
    assert new_oom_kills(before, {"n2": ("h2:/", 3)}, "n2") == 0


@pytest.mark.parametrize("handler", ["SIG_DFL", "SIG_IGN", "python"])
def test_the_watchdog_takes_sigint_over_only_where_it_is_ignored(client, handler):
    """SIG_DFL and Python handlers are the user's (their Ctrl-C still works); only an
    ignored SIGINT gets the watchdog's handler, and it is put back afterwards."""
    import io
    import signal

    from distgmm.jobs.watchdog import Watchdog

    def python_handler(signum, frame):
        pass

    wanted = {"SIG_DFL": signal.SIG_DFL, "SIG_IGN": signal.SIG_IGN,
              "python": python_handler}[handler]
    before = signal.signal(signal.SIGINT, wanted)
    try:
        with Watchdog(client, 30, Reporter(stream=io.StringIO())) as dog:
            inside = signal.getsignal(signal.SIGINT)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert after == wanted
    if handler == "SIG_IGN":
        assert inside == dog._on_sigint
    else:
        assert inside == wanted


def test_asking_the_nannies_is_bounded_in_time():
    """A nanny that never answers (a host gone from the network) costs the job's start
    the time bound, not a hang: the stall watchdog is not running yet."""
    from distgmm.jobs.memory_deaths import oom_kills

    class Unanswered:
        def run(self, *args, **kwargs):
            time.sleep(30)

    class Answered:
        def run(self, fn, nanny, on_error):
            return {"tcp://w:1": ("tcp://n:1", "h:/", 2), "tcp://w:2": ValueError("x")}

    t0 = time.monotonic()
    assert oom_kills(Unanswered(), timeout=0.5) == {}
    assert time.monotonic() - t0 < 5
    assert oom_kills(Answered()) == {"tcp://n:1": ("h:/", 2)}
