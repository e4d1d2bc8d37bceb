"""The search request's checks: each bad field is refused with its name."""

import pytest

from roundhouse.platform.api.validate import RequestError
from roundhouse.platform.tuning import space

TEMPLATE = {"workflow": "toy"}


def body(**overrides):
    b = {"template": TEMPLATE, "space": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
                                         "depth": {"type": "int", "low": 2, "high": 8},
                                         "solver": {"type": "categorical", "choices": ["lbfgs", "saga"]}},
         "metric": "roc_auc", "direction": "maximize", "budget": 8, "parallelism": 2, "seed": 7}
    b.update(overrides)
    return b


def field_of(b):
    with pytest.raises(RequestError) as e:
        space.parse(b)
    return e.value.field


def test_a_good_request_parses_and_round_trips():
    spec = space.parse(body())
    assert spec.space["C"] == space.Param("C", "float", low=0.01, high=10.0, log=True)
    assert spec.space["depth"].kind == "int" and spec.space["solver"].choices == ("lbfgs", "saga")
    assert (spec.metric, spec.direction, spec.budget, spec.parallelism, spec.seed) == ("roc_auc", "maximize", 8, 2, 7)
    assert space.from_dict(spec.to_dict()) == spec


def test_defaults():
    b = body()
    del b["direction"], b["parallelism"], b["seed"]
    spec = space.parse(b)
    assert (spec.direction, spec.parallelism, spec.seed) == ("maximize", 1, 0)


@pytest.mark.parametrize("param, field", [
    ({"type": "normal", "low": 0, "high": 1}, "space.C.type"),
    ({"low": 0, "high": 1}, "space.C.type"),
    ({"type": "float", "low": 1.0, "high": 1.0}, "space.C.low"),
    ({"type": "float", "low": 2.0, "high": 1.0}, "space.C.low"),
    ({"type": "int", "low": 5, "high": 3}, "space.C.low"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "space.C.low"),
    ({"type": "float", "low": -1.0, "high": 1.0, "log": True}, "space.C.low"),
    ({"type": "int", "low": 0, "high": 8, "log": True}, "space.C.low"),
    ({"type": "categorical", "choices": []}, "space.C.choices"),
    ({"type": "categorical"}, "space.C.choices"),
    ({"type": "categorical", "choices": ["a", "a"]}, "space.C.choices"),
    ({"type": "categorical", "choices": [{"x": 1}]}, "space.C.choices[0]"),
    ({"type": "int", "low": 0.5, "high": 3}, "space.C.low"),
    ({"type": "float", "high": 3.0}, "space.C.low"),
    ({"type": "float", "low": 0.1, "high": 3.0, "log": "yes"}, "space.C.log"),
    ({"type": "float", "low": 0.1, "high": 3.0, "choices": [1]}, "space.C.choices"),
    ("0.1..3", "space.C"),
])
def test_a_bad_parameter_is_named(param, field):
    assert field_of(body(space={"C": param})) == field


@pytest.mark.parametrize("overrides, field", [
    ({"space": {}}, "space"),
    ({"space": None}, "space"),
    ({"metric": "accuracy"}, "metric"),
    ({"metric": None}, "metric"),
    ({"direction": "up"}, "direction"),
    ({"budget": 0}, "budget"),
    ({"budget": None}, "budget"),
    ({"budget": 2.5}, "budget"),
    ({"budget": True}, "budget"),
    ({"parallelism": 0}, "parallelism"),
    ({"parallelism": -1}, "parallelism"),
    ({"seed": -1}, "seed"),
    ({"template": "fraud"}, "template"),
    ({"trials": 3}, "trials"),
])
def test_a_bad_field_is_named(overrides, field):
    assert field_of(body(**overrides)) == field


def test_a_missing_budget_is_named():
    b = body()
    del b["budget"]
    assert field_of(b) == "budget"


def test_not_an_object():
    assert field_of([1, 2]) == ""
