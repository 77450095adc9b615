"""Operator faults on a real cluster, each ending with its exit code, one line, in
bounded time, and nothing left behind: a read-only mount, a tmpfs that fills up (bytes
or inodes), SIGTERM during publish, SIGINT mid-fit, the same job twice at once, an
interrupted publish, workers paused or killed by memory.

The filesystem cases mount a real tmpfs / read-only bind mount (the tests run as root
in CI's container; chmod would not stop root).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import DaskCLICluster, blobs, cli_command, run_cli

from distgmm.io.publish import SUCCESS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    X = blobs(n=160_000, d=8, k=5, seed=11, spread=3.0)[0]
    path = tmp_path_factory.mktemp("liveness") / "x.zarr"
    zarr.create_array(store=str(path), shape=X.shape, chunks=(20_000, 8),
                      dtype="f8")[:] = X
    return str(path)


def fit_args(data, out, *extra):
    return ["fit", data, "-k", 5, "--output", out, "--tol", 0, "--max-iter", 10,
            "--cache", "none", "--init", "random_from_data", *extra]


def start(args, address):
    argv, env = cli_command(*args, address=address)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def one_error_line(stderr: str, pattern: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("distgmm:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Task exception" not in stderr, stderr
    assert pattern in lines[0], lines[0]
    return lines[0]


def leftovers(directory, name="out") -> list:
    """Staging, half-replaced outputs, leases and temp files of output ``name``."""
    return sorted(p for p in os.listdir(directory)
                  if p.startswith((f".{name}.staging-", f".{name}.old-", f".{name}.lease",
                                   f"..{name}.checkpoint.json.")))


@pytest.fixture
def mount(tmp_path):
    mounted = []

    def do(options, kind="tmpfs"):
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        if kind == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                           check=True)
        else:
            subprocess.run(["mount", "-o", f"bind,{options}", str(point), str(point)],
                           check=True)
        mounted.append(point)
        return point

    yield do
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_read_only_output_is_exit_74_naming_the_path(data, mount, scheduler_address):
    ro = mount("ro", kind="bind")
    t0 = time.monotonic()
    r = run_cli(*fit_args(data, ro / "out"), address=scheduler_address)
    print(f"read-only mount: exit {r.returncode} after {time.monotonic() - t0:.1f} s")
    assert r.returncode == 74, r.stderr
    line = one_error_line(r.stderr, f"I/O error on {ro}/")
    assert "read-only" in line and "[EROFS]" in line
    assert os.listdir(ro) == []


@pytest.mark.parametrize("options", ["size=256k", "size=64m,nr_inodes=12"],
                         ids=["bytes", "inodes"])
def test_a_filling_tmpfs_is_exit_74_and_leaves_no_staging(data, mount, options,
                                                          scheduler_address):
    full = mount(options)
    out = full / "out"
    t0 = time.monotonic()
    r = run_cli(*fit_args(data, out, "--probabilities", "--log-likelihood"),
                address=scheduler_address)
    print(f"tmpfs {options}: exit {r.returncode} after {time.monotonic() - t0:.1f} s")
    assert r.returncode == 74, r.stderr
    line = one_error_line(r.stderr, "I/O error on ")
    assert "[ENOSPC]" in line and str(full) in line
    assert leftovers(full) == [] and not out.exists()
    assert set(os.listdir(full)) <= {".out.checkpoint.json"}  # kept for the resume


def test_sigterm_during_publish_cleans_up_and_the_rerun_publishes(data, tmp_path,
                                                                  scheduler_address):
    out = tmp_path / "out"
    proc = start(fit_args(data, out, "--probabilities"), scheduler_address)
    deadline = time.time() + 120
    while not any(p.startswith(".out.staging-") for p in os.listdir(tmp_path)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    print(f"SIGTERM during publish: exit {proc.returncode} after "
          f"{time.monotonic() - t0:.1f} s")
    assert proc.returncode == 143, stderr
    one_error_line(stderr, "distgmm: error: terminated (SIGTERM)")
    assert leftovers(tmp_path) == [] and not out.exists()
    r = run_cli(*fit_args(data, out, "--probabilities"), address=scheduler_address)
    assert r.returncode == 0, r.stderr
    assert (out / SUCCESS).exists() and leftovers(tmp_path) == []


def test_sigint_mid_fit_is_one_line_and_130(data, tmp_path, scheduler_address):
    out = tmp_path / "out"
    proc = start(fit_args(data, out, "--log-format", "json"), scheduler_address)
    ckpt = tmp_path / ".out.checkpoint.json"
    deadline = time.time() + 120
    while not ckpt.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    one_error_line(stderr, "distgmm: error: interrupted (SIGINT)")
    assert leftovers(tmp_path) == [] and not out.exists()


def test_the_same_job_twice_at_once(data, tmp_path, scheduler_address):
    out = tmp_path / "out"
    slow = ("--max-iter", 80)  # the first run must outlive the second one's start
    first = start(fit_args(data, out, *slow), scheduler_address)
    lease = tmp_path / ".out.lease.json"
    deadline = time.time() + 60
    while not lease.exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    waiter = start(fit_args(data, out, *slow, "--log-format", "json", "--lease-wait", 600),
                   scheduler_address)
    t0 = time.monotonic()
    quick = run_cli(*fit_args(data, out, *slow, "--lease-wait", 0),
                    address=scheduler_address)
    print(f"second run with --lease-wait 0: exit 0 after {time.monotonic() - t0:.1f} s")
    assert quick.returncode == 0, quick.stderr
    one_error_line(quick.stderr, f"already running (pid {first.pid} on ")
    assert first.wait(timeout=240) == 0, first.communicate()
    _, stderr = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, stderr
    events = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]
    assert any(e["event"] == "lease-wait" and e["holder"] == first.pid for e in events)
    assert [e for e in events if e["event"] == "published"][-1]["already"] is True
    assert not any(e["event"] == "iteration" for e in events)  # it computed nothing
    assert leftovers(tmp_path) == [] and (out / SUCCESS).exists()


def test_an_interrupted_publish_is_replaced_without_overwrite(data, tmp_path,
                                                             scheduler_address):
    out = tmp_path / "out"
    assert run_cli(*fit_args(data, out), address=scheduler_address).returncode == 0
    first = json.loads((out / "metrics.json").read_text())
    (out / SUCCESS).unlink()  # as an object-store copy cut before _SUCCESS leaves it
    (tmp_path / ".out.staging-0123456789ab").mkdir()
    (tmp_path / ".out.staging-0123456789ab" / "part.0").write_bytes(b"x" * 1000)
    (tmp_path / "..out.checkpoint.json.deadbeef").write_text('{"format": "distg')
    r = run_cli(*fit_args(data, out, "--log-format", "json"), address=scheduler_address)
    assert r.returncode == 0, r.stderr
    assert "removed 2 leftover(s)" not in r.stderr  # JSON mode: check the event instead
    sweep = [json.loads(ln) for ln in r.stderr.splitlines() if '"sweep"' in ln]
    assert len(sweep[0]["removed"]) == 2
    assert (out / SUCCESS).exists() and leftovers(tmp_path) == []
    again = json.loads((out / "metrics.json").read_text())
    assert again["job"]["fingerprint"] == first["job"]["fingerprint"]
    np.testing.assert_allclose(again["cluster_sizes"], first["cluster_sizes"])


@pytest.mark.slow
def test_workers_paused_by_memory_exit_78_within_the_stall_timeout(tmp_path):
    stall = 8  # the workers pause at once: the run waits this long for progress, then ends
    X = np.random.default_rng(0).normal(size=(400_000, 8))
    path = tmp_path / "big.zarr"
    zarr.create_array(store=str(path), shape=X.shape, chunks=(50_000, 8),
                      dtype="f8")[:] = X
    # idle workers hold ~165 MiB here: 190 MiB pauses them at once (80 %: 152 MiB)
    cluster = DaskCLICluster(tmp_path / "c", n_workers=2, memory_limit="190MiB")
    os.makedirs(cluster.dir)
    try:
        cluster.start()
        t0 = time.monotonic()
        r = run_cli("fit", path, "-k", 5, "-o", tmp_path / "out", "--chunk-size", "8MiB",
                    "--cache", "none", "--stall-timeout", stall, "--max-iter", 5,
                    address=cluster.address, timeout=200)
        elapsed = time.monotonic() - t0
    finally:
        cluster.stop()
    print(f"memory-paused workers: exit {r.returncode} after {elapsed:.1f} s")
    assert r.returncode == 78, r.stderr
    # on a loaded machine a worker may cross the nanny's kill line instead of pausing:
    # the same memory sizing failure, found from the nanny's restart events
    line = one_error_line(r.stderr, "distgmm: error: ")
    if "paused by memory" in line:
        assert "waiting for workers:" in r.stderr  # said why before giving up
    else:
        assert "killed for exceeding their memory limit" in line, line
    assert "--chunk-size" in r.stderr and "--memory-limit" in r.stderr
    assert elapsed < stall + 60
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


def test_a_task_killing_its_worker_by_memory_is_78_not_75():
    import dask
    from distributed import Client, LocalCluster

    from distgmm.jobs.failures import classify
    from distgmm.jobs.memory_deaths import diagnosed

    def hog():
        block = np.ones(80_000_000 // 8)  # 80 MB over a 150 MiB worker's budget
        extra = [block.copy() for _ in range(3)]
        time.sleep(10)
        return len(extra)

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit="300MiB", host="127.0.0.1",
            dashboard_address=None, processes=True) as cluster, Client(cluster) as client:
        with pytest.raises(Exception) as info, diagnosed(client, 8 * 2**20):
            client.submit(hog, pure=False).result(timeout=120)
    failure = classify(info.value)
    assert failure.code == 78, info.value
    assert "exceeding their memory limit" in failure.message
    assert "--chunk-size" in failure.message


@pytest.fixture
def memory_cgroup():
    """A fresh cgroup-v1 memory cgroup of 700 MiB (root on a cgroup-v1 host, as here)."""
    base = Path("/sys/fs/cgroup/memory")
    if not (base / "memory.oom_control").exists() or not os.access(base, os.W_OK):
        pytest.skip("needs a writable cgroup-v1 memory hierarchy (root on this machine)")
    group = base / f"distgmm-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(700 * 2**20))
        yield group
    finally:
        for _ in range(50):  # the killed processes leave the group as they are reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.mark.slow
def test_a_worker_killed_by_the_kernel_oom_killer_is_78_not_75(tmp_path, memory_cgroup):
    """No nanny memory limit (--memory-limit 0) in a container smaller than the work: the
    kernel kills the worker; the cgroup's oom_kill count says it was memory."""
    from distgmm.jobs.memory_deaths import cgroup_oom_kills

    X = np.random.default_rng(0).normal(size=(4_000_000, 8))  # one 256 MB chunk
    path = tmp_path / "big.zarr"
    zarr.create_array(store=str(path), shape=X.shape, chunks=X.shape,
                      dtype="f8")[:] = X
    cluster = DaskCLICluster(tmp_path / "c", n_workers=1, memory_limit="0",
                             cgroup=memory_cgroup, extra_env={
                                 "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    os.makedirs(cluster.dir)
    try:
        cluster.start()
        t0 = time.monotonic()
        r = run_cli("fit", path, "-k", 5, "-o", tmp_path / "out", "--chunk-size", "1GiB",
                    "--cache", "none", "--max-iter", 2, address=cluster.address,
                    timeout=200)
        elapsed = time.monotonic() - t0
    finally:
        cluster.stop()
    print(f"kernel OOM kill: exit {r.returncode} after {elapsed:.1f} s")
    member = tmp_path / "cgroup"  # /proc/self/cgroup as a process in the group sees it
    member.write_text(f"4:memory:/{memory_cgroup.name}\n0::/\n")
    kills = cgroup_oom_kills(proc_cgroup=str(member))
    assert kills and kills[1] >= 1, "the kernel killed nothing: the test's sizing is off"
    assert r.returncode == 78, r.stderr
    line = one_error_line(r.stderr, "distgmm: error: ")
    print(line)
    assert "out-of-memory killer" in line and "--memory-limit" in line, line
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


def test_sigterm_mid_fit_resumes_from_a_checkpoint_dir(data, tmp_path, scheduler_address):
    out, state = tmp_path / "out", tmp_path / "state"
    args = fit_args(data, out, "--checkpoint-dir", state, "--log-format", "json")
    proc = start(args, scheduler_address)
    deadline = time.time() + 120
    while not (state.exists() and any(p.endswith(".checkpoint.json")
                                      for p in os.listdir(state))):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    one_error_line(stderr, "terminated (SIGTERM)")
    assert not any(p.startswith(".out.") for p in os.listdir(tmp_path))  # all in state/
    assert [p for p in os.listdir(state) if "lease" in p] == []
    r = run_cli(*args, address=scheduler_address)
    assert r.returncode == 0, r.stderr
    assert '"resume"' in r.stderr
    assert (out / SUCCESS).exists() and os.listdir(state) == []
