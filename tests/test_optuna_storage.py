"""The study's Optuna searcher against persistent storages (SQLite file, PostgreSQL)."""

from pathlib import Path

import optuna
import pytest
from ray.tune.search import Searcher

from study.searchers import OptunaSource, PackSearcher, optuna_study, storage_url
from study.spec import SpecError, parse_spec

SPEC = {
    "name": "stored",
    "variant": "beta_vae",
    "weights": {"beta": {"schedule": "constant", "value": {"low": 1, "high": 8}}},
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
}


def _drive_searcher(url: str) -> None:
    """Tell the searcher what Tune would: one trial completes, one crashes, one is stopped early."""
    spec = parse_spec({**SPEC, "search": {"storage": url}})
    study = optuna_study(spec, optuna.storages.RDBStorage(url))
    searcher = PackSearcher(OptunaSource(spec, study, budget=3, persistent=True), size=1)
    first = searcher.suggest("t1")["members"][0]["point"]
    assert 1 <= first["beta.value"] <= 8 and first["variant"] == "beta_vae"
    searcher.on_trial_result("t1", {"step": 10, "recon": 200.0})  # a checkpoint report: no outcome yet
    searcher.on_trial_complete(
        "t1", {"members/0/status": "completed", "members/0/recon": 150.0, "members/0/mig": 0.2, "final": 1}
    )
    searcher.suggest("t2")
    searcher.on_trial_complete("t2", error=True)
    # Ended on an intermediate report (a scheduler stopped it): pruned, never complete.
    searcher.suggest("t3")
    searcher.on_trial_complete("t3", {"step": 50, "recon": 180.0, "final": 0})
    assert searcher.suggest("t4") == Searcher.FINISHED  # the budget is spent


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
    with pytest.raises(SpecError, match=r"search\.storage: must be 'sqlite', 'memory' or a database URL"):
        parse_spec({**SPEC, "search": {"storage": "redis"}})
    # optuna.db in the study folder by default (optuna-dashboard reads it); memory only when asked.
    spec = parse_spec(SPEC)
    assert spec.search.storage == "sqlite"
    assert storage_url(spec, Path("/studies/s")) == f"sqlite:///{Path('/studies/s/optuna.db').resolve()}"
    assert storage_url(parse_spec({**SPEC, "search": {"storage": "memory"}}), Path("/s")) is None
