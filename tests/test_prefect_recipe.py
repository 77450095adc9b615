"""deploy/schedule/prefect_flow.py run by Prefect itself (a temporary local API server on
127.0.0.1, no Prefect Cloud): two consecutive dates of a hive-partitioned Parquet lake on a
`dask scheduler` cluster, a retry after a real exit 75 (an unreachable scheduler on the first
attempt) and no retry after an exit 2."""

import importlib.util
import json
import os
import socket
import stat
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


def _task_history(flow_run_id) -> list[list[tuple[str, str]]]:
    """Each task run of the flow run: its states (name, message) in order, from the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return [[(s.name, s.message or "") for s in sorted(
            client.read_task_run_states(r.id), key=lambda s: s.timestamp)] for r in runs]


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
    from prefect.testing.utilities import prefect_test_harness

    recipe = _load_recipe()
    with prefect_test_harness():
        states = {day: recipe.events_daily(day, return_state=True) for day in (*DAYS, MISSING)}
        history = {day: _task_history(state.state_details.flow_run_id)
                   for day, state in states.items()}
    assert [states[d].name for d in (*DAYS, MISSING)] == ["Completed", "Completed", "Failed"]
    # the first date: one task run, retried exactly once after the exit 75
    (first,) = history[DAYS[0]]
    names = [name for name, _ in first]
    assert names == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"], first
    (second,) = history[DAYS[1]]
    assert [name for name, _ in second] == ["Pending", "Running", "Completed"], second
    # exit 2 (no rows for that date) fails the flow run at once: no retry
    (bad,) = history[MISSING]
    assert [name for name, _ in bad] == ["Pending", "Running", "Failed"], bad
    assert "exited 2" in bad[-1][1]
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
