"""pets() reports its progress: callbacks for every stage, step and trial, and a bar on stderr
that can be turned off. Oracle: the tiny configuration's own counts (2 random episodes of 6
steps, then 2 trials of one episode of 6 steps each)."""

from __future__ import annotations

from recede.envs import get_task
from recede.policy_learning import pets

TINY = dict(model_options={"hidden": 8, "layers": 1, "members": 2, "particles": 2},
            train_options={"epochs": 1}, planner_options_={"samples": 8, "iterations": 1},
            horizon=3, steps=6, initial_episodes=2)


def test_pets_calls_back_every_stage_step_and_trial_and_draws_a_bar(capsys):
    stages, steps, trials = [], [], []
    result = pets(get_task("double-integrator"), 2, seed=0, on_stage=lambda k, s: stages.append((k, s)),
                  on_step=lambda k, t: steps.append((k, t)), on_trial=trials.append, **TINY)
    assert stages == [(0, "random"), (1, "train"), (1, "episode"), (2, "train"), (2, "episode")]
    assert steps == [(0, t) for t in range(1, 7)] * 2 + [(k, t) for k in (1, 2) for t in range(1, 7)]
    assert trials == result.trials and [t.trial for t in trials] == [0, 1, 2]
    err = capsys.readouterr().err
    assert "pets double-integrator" in err and "3/3" in err  # the bar, on stderr, at its end
    assert "trial 2: step 6/6" in err


def test_pets_progress_bar_can_be_turned_off(capsys):
    pets(get_task("double-integrator"), 1, seed=0, progress=False, **TINY)
    assert capsys.readouterr().err == ""
