"""The rung keeper (study.rung_keeper) on a real local Ray: it outlives the death of its process."""

import pytest
import ray

from study.folder import StudyFolder
from study.rung_keeper import find_keeper, start_keeper
from study.spec import StudySpec

pytestmark = pytest.mark.integration


@pytest.fixture()
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_a_keeper_that_dies_comes_back_with_every_decision(tmp_path, make_spec, local_ray):
    stopping = {"kind": "pareto", "grace_period": 10, "reduction_factor": 2}
    spec = StudySpec.model_validate(make_spec(training={"steps": 40}, search={"early_stopping": stopping}))
    folder = StudyFolder(tmp_path)
    keeper = start_keeper(spec, folder)
    first = ray.get(keeper.decide.remote("t0000", 10, {"recon": 5.0, "mig": 0.1}))
    ray.kill(keeper, no_restart=False)  # its process dies, as the OOM killer would end it
    again = find_keeper(tmp_path)
    assert ray.get(again.decide.remote("t0000", 10, {"recon": 1.0, "mig": 0.9})) == first  # from rungs.json
    second = ray.get(again.decide.remote("t0001", 10, {"recon": 9.0, "mig": 0.0}))
    assert second["reached"] == 2 and not second["go_on"]  # ranked among the rung's arrivals before the death
