"""Prefect: the daily data-lake job as a flow; transient failures (exit 75) retry.

    python deploy/schedule/prefect_flow.py 2026-11-22

DISTGMM_JOB (the job spec), DISTGMM_LAKE and DISTGMM_RETRY_DELAY (seconds) override the
defaults below; DASK_SCHEDULER_ADDRESS names the cluster (unset: an embedded one).
"""

import os
import subprocess
import sys

from prefect import flow, task

JOB = os.environ.get("DISTGMM_JOB", "/opt/jobs/daily-lake.yaml")
LAKE = os.environ.get("DISTGMM_LAKE", "/lake")
RETRY_DELAY = float(os.environ.get("DISTGMM_RETRY_DELAY", "300"))


class TransientFailure(RuntimeError):
    pass


@task(retries=3, retry_delay_seconds=RETRY_DELAY,
      retry_condition_fn=lambda task, run, state: isinstance(state.result(raise_on_failure=False),
                                                             TransientFailure))
def run_distgmm(date: str) -> None:
    argv = ["distgmm", "run", JOB, "--set", f"lake={LAKE}",
            "--set", f"date={date}", "--log-format", "json"]
    code = subprocess.run(argv).returncode
    if code == 75:
        raise TransientFailure(f"cluster failure (exit 75) for {date}; resuming on retry")
    if code != 0:
        raise RuntimeError(f"distgmm exited {code} for {date}")


@flow(name="distgmm-events-daily")
def events_daily(date: str) -> None:
    run_distgmm(date)


if __name__ == "__main__":
    events_daily(sys.argv[1])
