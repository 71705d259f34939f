import math

import pytest

from trainers.schedules import Schedule, ScheduleError, constant, cyclical, linear, step_change


def test_constant():
    assert [constant(t, 4.0) for t in (0, 10, 10**6)] == [4.0, 4.0, 4.0]


def test_linear_ramp_holds_outside_and_interpolates_inside():
    f = lambda t: linear(t, start=0.0, end=25.0, start_step=100, end_step=1100)  # noqa: E731
    assert f(0) == 0.0 and f(100) == 0.0
    assert f(600) == pytest.approx(12.5)
    assert f(1100) == 25.0 and f(10**6) == 25.0
    values = [f(t) for t in range(0, 1200, 7)]
    assert values == sorted(values)


def test_step_change():
    assert step_change(9, 1.0, 5.0, at_step=10) == 1.0
    assert step_change(10, 1.0, 5.0, at_step=10) == 5.0


def test_cyclical_is_periodic_ramps_then_holds():
    f = lambda t: cyclical(t, start=0.0, end=1.0, period=100, ramp_fraction=0.5)  # noqa: E731
    assert f(0) == 0.0 and f(25) == pytest.approx(0.5) and f(50) == 1.0 and f(99) == 1.0
    for t in range(0, 300, 13):
        assert f(t) == f(t + 100)


def test_from_config_fills_defaults_and_calls():
    s = Schedule.from_config({"schedule": "linear", "end": 4, "end_step": 10}, "weights.beta")
    assert s.params == {"start": 0.0, "end": 4.0, "start_step": 0, "end_step": 10}
    assert s(5) == pytest.approx(2.0)
    assert Schedule.from_config(3, "weights.beta")(99) == 3.0
    assert Schedule.from_config(s.to_config(), "x") == s


@pytest.mark.parametrize(
    "config, message",
    [
        ({"schedule": "constant", "value": -1}, r"weights\.beta\.value: must be >= 0"),
        ({"schedule": "linear", "end": 1, "start_step": 10, "end_step": 10}, r"weights\.beta\.end_step: must be after"),
        ({"schedule": "linear", "end": 1}, r"weights\.beta\.end_step: required"),
        ({"schedule": "cyclical", "end": 1, "period": 0}, r"weights\.beta\.period: must be >= 1"),
        ({"schedule": "cyclical", "end": 1, "period": 5, "ramp_fraction": 1.5}, r"ramp_fraction: must be in"),
        ({"schedule": "linear", "end": 1, "end_step": 2.5}, r"end_step: must be a whole number"),
        ({"schedule": "wavy"}, r"weights\.beta\.schedule: unknown schedule 'wavy'"),
        ({"schedule": "constant", "value": 1, "period": 3}, r"weights\.beta\.period: not a parameter"),
        ({"schedule": "constant", "value": math.nan}, r"must be finite"),
        ({"schedule": "constant", "value": "big"}, r"must be a number"),
    ],
)
def test_invalid_schedules_name_the_field(config, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule.from_config(config, "weights.beta")
