"""The embedded cluster's workers: huge pages for large buffers, the user's choice kept."""

from __future__ import annotations

import os

import dask

from distgmm.jobs.cluster import HUGE_PAGES, connect, worker_environ


def test_workers_get_huge_pages_next_to_dask_s_own_settings(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    environ = worker_environ()
    assert environ["GLIBC_TUNABLES"] == HUGE_PAGES["GLIBC_TUNABLES"]
    assert str(environ["MALLOC_TRIM_THRESHOLD_"]) == "65536"  # Dask's default stays


def test_a_user_s_glibc_tunables_win(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert "GLIBC_TUNABLES" not in worker_environ()
    monkeypatch.delenv("GLIBC_TUNABLES")
    with dask.config.set({"distributed.nanny.pre-spawn-environ.GLIBC_TUNABLES": "x=1"}):
        assert worker_environ()["GLIBC_TUNABLES"] == "x=1"


def test_embedded_workers_start_with_it(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with connect(n_workers=1, threads_per_worker=1) as client:
        seen = client.run(lambda: os.environ.get("GLIBC_TUNABLES"))
    assert list(seen.values()) == [HUGE_PAGES["GLIBC_TUNABLES"]]
    assert "GLIBC_TUNABLES" not in os.environ  # the client's own process is untouched
