"""`recede run TASK --model DIR` plans on a learned model with explicit defaults of its own
(a smaller budget, a horizon, the model's propagation), shown in the summary and overridable.

Oracles: the task's own planner defaults with the documented budget in place, and the options
the run actually used (its JSON record and the model's repr)."""

from __future__ import annotations

import json
import re

import pytest

from recede.cli import main
from recede.envs import get_task
from recede.models.ensemble import Ensemble
from recede.policy_learning import MODEL_RUN_DEFAULTS, model_for, model_run_defaults
from recede.policy_learning.pets import GENERIC_RUN


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("planner", ["cem", "icem", "mppi", "random", "ilqr", "mcts"])
def test_learned_model_defaults_are_the_tasks_with_a_smaller_budget(planner):
    task = get_task("cartpole-swingup")
    d = model_run_defaults(task, planner)
    own = MODEL_RUN_DEFAULTS["cartpole-swingup"]
    budget = own["budget"]
    want = dict(task.planner_defaults.get(planner, {}))
    if planner == "random":
        want["samples"] = budget["samples"] * budget["iterations"]
    elif planner in ("cem", "icem", "mppi"):
        want.update(budget)
    assert d["planner"] == want
    assert d["horizon"] == own["horizon"] and d["model"] == own["model"]
    assert d["planner"] is not task.planner_defaults.get(planner)  # a copy
    if planner == "mppi":  # the task's tuning survives
        assert d["planner"]["temperature"] == task.planner_defaults["mppi"]["temperature"]


def test_tasks_without_their_own_entry_get_the_generic_defaults():
    d = model_run_defaults(get_task("double-integrator"), "cem")
    assert {k: d["planner"][k] for k in GENERIC_RUN["budget"]} == GENERIC_RUN["budget"]
    assert d["horizon"] is None and d["model"] == GENERIC_RUN["model"]


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "m"
    model_for(get_task("double-integrator"), members=2, hidden=4, layers=1, particles=7,
              propagation="tsinf").save(path)
    return path


def test_run_model_uses_shows_and_overrides_the_learned_model_defaults(capsys, tmp_path, checkpoint):
    task = get_task("double-integrator")
    d = model_run_defaults(task, "cem")
    out_json = tmp_path / "run.json"
    code, out, err = run_cli(capsys, "run", "double-integrator", "--model", checkpoint, "--steps", 1,
                             "--no-progress", "--json", out_json)
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert {k: record["options"][k] for k in d["planner"]} == d["planner"]
    assert record["horizon"] == task.horizon_for("cem")
    m = d["model"]
    assert (f"propagation={m['propagation']}, particles={m['particles']}, "
            f"disagreement_weight={m['disagreement_weight']:g}, precision=auto") in out
    assert re.search(r"^precision +(float32|bfloat16) \(auto: ", out, re.M)

    code, out, err = run_cli(capsys, "run", "double-integrator", "--model", checkpoint, "--steps", 1,
                             "--no-progress", "--json", out_json, "--samples", 16, "--horizon", 5,
                             "--model-option", "propagation=tsinf", "--model-option", "particles=3",
                             "--model-option", "precision=float32")
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["options"]["samples"] == 16 and record["horizon"] == 5
    assert "propagation=tsinf, particles=3" in out and "precision=float32" in out
    assert Ensemble.load(checkpoint).config.particles == 7  # the checkpoint is left as it was


def test_run_model_option_refusals(capsys, checkpoint):
    code, _, err = run_cli(capsys, "run", "double-integrator", "--model", checkpoint, "--steps", 2,
                           "--no-progress", "--model-option", "hidden=8")
    assert code == 2 and "model option 'hidden' is fixed by the trained model" in err
    code, _, err = run_cli(capsys, "run", "double-integrator", "--steps", 2, "--model-option", "particles=3")
    assert code == 2 and err == "recede: error: argument --model-option: only with --model DIR\n"
    code, _, err = run_cli(capsys, "run", "double-integrator", "--model", checkpoint, "--steps", 2,
                           "--model-option", "particles")
    assert code == 2 and "expected NAME=VALUE" in err
