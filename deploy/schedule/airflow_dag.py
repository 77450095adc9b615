"""Airflow: the daily data-lake job, one run per logical date, with retries.

Exit 75 (cluster failure) is worth retrying: the rerun resumes from its checkpoint.
Exit 2 (bad input) will fail again; Airflow's BashOperator cannot tell them apart, so
the retry count is kept small. A retry after a successful publish exits 0 at once.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="distgmm_events_daily",
    start_date=datetime(2026, 11, 1),
    schedule="15 2 * * *",
    catchup=True,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
) as dag:
    BashOperator(
        task_id="cluster_events",
        bash_command=(
            "distgmm run /opt/jobs/daily-lake.yaml --set lake=/lake --set date={{ ds }} "
            "--log-format json"
        ),
        env={"DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler:8786"},
        append_env=True,
    )
