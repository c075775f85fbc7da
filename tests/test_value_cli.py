"""`recede fit-value` and `recede run --value`: a value fitted on a planner's runs, then used as
the terminal cost of a shorter horizon; and the errors a user meets."""

import json
import os

from recede.cli import main


def test_fit_value_then_run_with_it(tmp_path, capsys):
    out = str(tmp_path / "v")
    rc = main(["fit-value", "pendulum-swingup", "--out", out, "--episodes", "2", "--steps", "6", "--spread", "3,1",
               "--option", "samples=16", "--option", "iterations=1",
               "--members", "2", "--polo-rounds", "2", "--fit-option", "epochs=3",
               "--fit-option", "hidden=16", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "round 1: horizon 10" in text  # the later round plans at a third of the horizon
    fit = json.load(open(os.path.join(out, "fit.json")))
    assert [r["episodes"] for r in fit["rounds"]] == [2, 4]
    assert [r["states"] for r in fit["rounds"]] == [12, 24]
    info = json.load(open(os.path.join(out, "value.json")))
    assert info["task"] == "pendulum-swingup" and info["members"] == 2 and info["hidden"] == [16]
    assert info["meta"]["spread"] == [3.0, 1.0]
    rc = main(["run", "pendulum-swingup", "--value", out, "--horizon", "5", "--steps", "3", "--samples", "16",
               "--iterations", "1", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "as the terminal cost" in text and "5 steps" in text


def test_value_cli_errors(tmp_path, capsys):
    out = str(tmp_path / "v")
    assert main(["fit-value", "pendulum-swingup", "--out", out, "--episodes", "1", "--steps", "3",
                 "--option", "samples=8", "--option", "iterations=1",
                 "--members", "1", "--fit-option", "epochs=1", "--no-progress"]) == 0
    capsys.readouterr()
    for argv, msg in [
        (["run", "cartpole-swingup", "--value", out, "--steps", "1"], "fitted for task 'pendulum-swingup'"),
        (["run", "pendulum-swingup", "--value", str(tmp_path / "none"), "--steps", "1"], "no such directory"),
        (["run", "pendulum-swingup", "--value", out, "--policy", out], "not with --policy"),
        (["fit-value", "pendulum-swingup", "--out", out, "--fit-option", "bogus=1"], "unknown bogus"),
        (["fit-value", "pendulum-swingup", "--out", out, "--fit-option", "discount=2"], "discount"),
        (["fit-value", "pendulum-swingup", "--out", out, "--noise", "-1"], "--noise"),
        (["fit-value", "pendulum-swingup", "--out", out, "--spread", "1,2,3"], "spread must be 2 finite numbers"),
        (["fit-value", "pendulum-swingup", "--out", out, "--spread", "a"], "--spread"),
    ]:
        assert main(argv) == 2, argv
        assert msg in capsys.readouterr().err
