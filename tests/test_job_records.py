"""What `vae-study jobs` makes of Ray's job records, without a cluster (the cluster runs in test_jobs.py)."""

from datetime import datetime

import pytest

from study.errors import PreflightError
from study.interrupt import GRACE_SECONDS
from study.jobs import STOP_WAIT_SECONDS, StudyJob, dashboard_address, jobs_table


def _job(**changes) -> StudyJob:
    fields = dict(job_id="slow-20261202-111448", study="slow", study_dir="/mnt/studies/slow", state="RUNNING",
                  exit_code=None, done=3, total=40, started=datetime(2026, 12, 2, 11, 14),
                  user="alice", message="")  # fmt: skip
    return StudyJob(**{**fields, **changes})


def test_ray_waits_for_the_trials_grace_before_it_kills_a_stopped_driver():
    assert STOP_WAIT_SECONDS >= GRACE_SECONDS + 30


def test_states_say_what_the_driver_exit_meant():
    assert _job().outcome == "RUNNING" and not _job().ended
    assert _job(state="FAILED", exit_code=2).outcome == "FAILED (exit 2: bad input)"
    assert _job(state="FAILED", exit_code=1).outcome == "FAILED (exit 1: trials errored)"
    assert _job(state="FAILED", exit_code=-9).outcome == "FAILED (exit -9: crashed)"
    assert _job(state="STOPPED", exit_code=130).outcome == "STOPPED" and _job(state="STOPPED").ended
    assert _job(state="SUCCEEDED", exit_code=0).outcome == "SUCCEEDED"


def test_the_table_has_one_aligned_row_per_study():
    table = jobs_table([_job(), _job(job_id="q-1", study="quick", done=None, total=None, state="PENDING")])
    header, first, second = table.splitlines()
    assert header.split() == ["job", "study", "state", "trials", "started", "user", "study", "folder"]
    assert first.split() == ["slow-20261202-111448", "slow", "RUNNING", "3/40", "2026-12-02", "11:14", "alice",
                             "/mnt/studies/slow"]  # fmt: skip
    assert second.split()[3] == "?" and header.index("state") == first.index("RUNNING") == second.index("PENDING")
    assert "no studies" in jobs_table([])


def test_the_dashboard_address_is_an_http_address(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(PreflightError, match="--address: give the cluster's dashboard"):
        dashboard_address(None)
    with pytest.raises(PreflightError, match=r"not '127\.0\.0\.1:6379'"):
        dashboard_address("127.0.0.1:6379")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265/")
    assert dashboard_address(None) == "http://127.0.0.1:8265"
