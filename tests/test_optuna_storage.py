"""The study's Optuna searcher against persistent storages (SQLite file, PostgreSQL)."""

import optuna
import pytest

from study.runner import FinalResultOptunaSearch
from study.space import DefineByRun, make_sampler, storage_url
from study.spec import SpecError, parse_spec

SPEC = {
    "name": "stored",
    "variant": "beta_vae",
    "weights": {"beta": {"schedule": "constant", "value": {"low": 1, "high": 8}}},
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
}


def _drive_searcher(url: str) -> None:
    """Tell the searcher what Tune would: one trial completes, one reports a checkpoint then fails."""
    spec = parse_spec({**SPEC, "search": {"storage": url}})
    searcher = FinalResultOptunaSearch(
        space=DefineByRun(spec),
        metric=["recon", "mig"],
        mode=["min", "max"],
        sampler=make_sampler(spec),
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(url),
    )
    first = searcher.suggest("t1")
    assert 1 <= first["beta.value"] <= 8 and first["variant"] == "beta_vae"
    searcher.on_trial_result("t1", {"step": 10, "recon": 200.0})  # a checkpoint report: no metric yet
    searcher.on_trial_complete("t1", {"recon": 150.0, "mig": 0.2, "final": 1})
    searcher.suggest("t2")
    searcher.on_trial_complete("t2", error=True)
    # Ended on an intermediate report (a scheduler stopped it): pruned, never complete.
    searcher.suggest("t3")
    searcher.on_trial_complete("t3", {"step": 50, "recon": 180.0, "mig": 0.1, "final": 0})


def test_searcher_history_persists_in_sqlite(tmp_path):
    spec = parse_spec({**SPEC, "search": {"storage": "sqlite"}})
    url = storage_url(spec, tmp_path)
    assert url == f"sqlite:///{tmp_path / 'optuna.db'}"
    _drive_searcher(url)
    study = optuna.load_study(study_name="stored", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED"]
    assert study.trials[0].values == [150.0, 0.2]


@pytest.mark.integration
def test_searcher_history_persists_in_postgres(postgres_uri):
    _drive_searcher(postgres_uri)
    study = optuna.load_study(study_name="stored", storage=postgres_uri)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED"]
    assert study.trials[0].values == [150.0, 0.2] and 1 <= study.trials[0].params["beta.value"] <= 8


def test_storage_must_be_sqlite_or_a_url():
    with pytest.raises(SpecError, match=r"search\.storage: must be 'sqlite' or a database URL"):
        parse_spec({**SPEC, "search": {"storage": "redis"}})
    assert parse_spec(SPEC).search.storage is None  # in memory by default
