"""deploy/schedule/prefect_flow.py run as a user runs it (`python prefect_flow.py DATE`)
against Prefect's temporary local API server on 127.0.0.1 (no Prefect Cloud, no usage
statistics): two consecutive dates of a hive-partitioned Parquet lake on a `dask scheduler`
cluster, a retry after a real exit 75 (an unreachable scheduler on the first attempt) and no
retry after an exit 2 (a date without data)."""

import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_cli import write_lake

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "deploy" / "schedule" / "prefect_flow.py"
DAYS = ("2026-11-21", "2026-11-22")
MISSING = "2026-11-30"  # no partition for that date: exit 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flaky_distgmm(bin_dir: Path, calls: Path) -> None:
    """`distgmm` first on PATH: the first call is pointed at a closed port, so the real
    command exits 75 by itself; each call's exit code and arguments go to `calls`."""
    real = Path(sys.executable).parent / "distgmm"
    marker = bin_dir / "failed-once"
    script = bin_dir / "distgmm"
    script.write_text(f"""#!/bin/sh
if [ ! -e '{marker}' ]; then
    touch '{marker}'
    export DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:{_closed_port()}
    export DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=2s
fi
'{real}' "$@"
code=$?
echo "$code $*" >> '{calls}'
exit $code
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _load_recipe():
    spec = importlib.util.spec_from_file_location("prefect_flow_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs_by_date() -> dict[str, tuple[str, list[list[str]]]]:
    """From the Prefect API: each flow run's date -> (its final state, the state names of
    each of its task runs in order)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    out = {}
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs():
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            out[run.parameters["date"]] = (run.state.name, [
                [s.name for s in sorted(client.read_task_run_states(t.id),
                                        key=lambda s: s.timestamp)] for t in tasks])
    return out


@pytest.mark.slow
def test_prefect_runs_the_recipe_on_two_dates_with_a_retry(scheduler_address, tmp_path,
                                                            monkeypatch):
    lake = tmp_path / "lake"
    write_lake(lake, days=DAYS, n=300)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    _flaky_distgmm(bin_dir, calls)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISTGMM_JOB", str(ROOT / "jobs" / "daily-lake.yaml"))
    monkeypatch.setenv("DISTGMM_LAKE", str(lake))
    monkeypatch.setenv("DISTGMM_RETRY_DELAY", "1")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler_address)
    # nothing leaves 127.0.0.1: no usage statistics from the client or the server
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        codes = [subprocess.run([sys.executable, RECIPE, day], env=env, capture_output=True,
                                text=True, timeout=300).returncode
                 for day in (*DAYS, MISSING)]
        runs = _runs_by_date()
    assert codes == [0, 0, 1], codes
    assert {day: state for day, (state, _) in runs.items()} == {
        DAYS[0]: "Completed", DAYS[1]: "Completed", MISSING: "Failed"}
    # the first date: one task run, retried exactly once after the exit 75
    assert runs[DAYS[0]][1] == [["Pending", "Running", "AwaitingRetry", "Retrying",
                                 "Completed"]]
    assert runs[DAYS[1]][1] == [["Pending", "Running", "Completed"]]
    assert runs[MISSING][1] == [["Pending", "Running", "Failed"]]  # exit 2: no retry
    ran = [(line.split()[0], line.split("--set date=")[1].split()[0])
           for line in calls.read_text().splitlines()]
    assert ran == [("75", DAYS[0]), ("0", DAYS[0]), ("0", DAYS[1]), ("2", MISSING)]
    # both dates published completely, the second warm-started from the first
    lake_rows = pd.read_parquet(lake / "events")
    out = lake / "clusters" / "events"
    for day in DAYS:
        assert (out / f"date={day}" / "_SUCCESS").exists()
        got = pd.read_parquet(out / f"date={day}" / "predictions.parquet")
        want = lake_rows[lake_rows.date == day].event_id
        assert sorted(got.event_id) == sorted(want) and len(got) == 300
    metrics = json.loads((out / f"date={DAYS[1]}" / "metrics.json").read_text())
    assert metrics["drift"]["previous_output"] == str(out / f"date={DAYS[0]}")
    assert sorted(p.name for p in out.iterdir()) == [f"date={d}" for d in DAYS]


def test_the_recipe_defaults_are_unchanged(monkeypatch):
    for var in ("DISTGMM_JOB", "DISTGMM_LAKE", "DISTGMM_RETRY_DELAY"):
        monkeypatch.delenv(var, raising=False)
    recipe = _load_recipe()
    assert (recipe.JOB, recipe.LAKE) == ("/opt/jobs/daily-lake.yaml", "/lake")
    assert recipe.run_distgmm.retries == 3
    assert recipe.run_distgmm.retry_delay_seconds == 300
