"""``recede imitate``: its outputs against the library, and bad input refused before anything is
written.

Oracles: the same DAgger run through :func:`recede.policy_learning.imitation.dagger` (same seed,
same weights); the expert's returns from :func:`evaluate_controller` on the same episodes. The
expert is LQR on the double integrator and the networks are tiny, so a run takes seconds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os

import numpy as np
import pytest
import torch

from recede.cli import main
from recede.controllers import LQRController
from recede.envs import get_task
from recede.policies import load_policy, policy_info
from recede.policy_learning.imitation import (
    BCConfig, DAggerConfig, dagger, eval_seeds, evaluate_controller, expert_spec,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASK = "double-integrator"
TINY = ["--hidden", "8", "--epochs", "5", "--eval-episodes", "1", "--episodes", "2", "--no-progress"]


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_imitate_writes_the_curve_and_the_policies(tmp_path):
    out = tmp_path / "imit"
    code, stdout, err = cli("imitate", TASK, "--expert", "lqr", "--labels", "40,80", "--seeds", "0,1",
                            "--out", out, *TINY)
    assert code == 0, err
    with open(out / "imitation.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"], r["labels"]) for r in rows] == [
        (m, s, n) for s in ("0", "1") for m, n in
        [("expert", "0"), ("bc", "40"), ("bc", "80"), ("dagger", "40"), ("dagger", "80")]]
    assert (out / "imitation.png").read_bytes()[:8] == PNG_SIGNATURE
    task = get_task(TASK)
    expert = evaluate_controller(task, LQRController(task.problem()), eval_seeds(0, 1))
    assert float(rows[0]["return_mean"]) == pytest.approx(expert.mean(), rel=1e-12)
    # the saved DAgger policy is the library's, same seed
    cfg = DAggerConfig(labels=80, labels_per_round=40, episodes=2, eval_episodes=1,
                       bc=BCConfig(hidden=(8,), epochs=5))
    lib = dagger(task, expert_spec(task, "lqr"), config=cfg, seed=1).policy
    saved = load_policy(str(out / "dagger" / "seed_1"), task)
    for a, b in zip(lib.net.mlp.weights, saved.net.mlp.weights):
        assert torch.equal(a[0].float(), b[0])
    assert float(rows[-1]["return_mean"]) == pytest.approx(evaluate_controller(task, lib, eval_seeds(1, 1))[0])
    assert policy_info(str(out / "bc" / "seed_0"))["meta"]["method"] == "bc"
    assert "time per action (median): policy" in stdout and "expert/policy" in stdout
    # `recede run --policy` runs what it wrote
    code, _, err = cli("run", TASK, "--policy", out / "bc" / "seed_0", "--no-progress")
    assert code == 0, err


@pytest.mark.parametrize("argv, message", [
    (["--expert", "mpc"], "argument --expert: expert must be mpc:PLANNER, lqr or policy:DIR, got 'mpc'"),
    (["--expert", "mpc:nope"], "argument --expert: unknown planner 'nope'"),
    (["--expert", "lqr", "--option", "samples=3"], "argument --expert: options apply to an mpc expert, not 'lqr'"),
    (["--expert", "lqr", "--labels", "0"], "argument --labels: must be distinct integers >= 1, got '0'"),
    (["--expert", "lqr", "--method", "bc,gail"], "argument --method: must be distinct names among bc, dagger"),
    (["--expert", "lqr", "--beta-param", "1.5"], "argument --beta-param: beta_param must be a number in [0, 1]"),
    (["--expert", "lqr", "--workers", "2"], "argument --workers: only an mpc expert labels in processes"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, argv, message):
    out = tmp_path / "imit"
    code, stdout, err = cli("imitate", TASK, "--out", out, *argv, *TINY)
    assert code == 2 and err.startswith(f"recede: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(out)


def test_a_policy_expert_of_another_task_is_refused(tmp_path):
    from recede.policies import DeterministicPolicyNet, save_policy

    other = get_task("pendulum-swingup")
    net = DeterministicPolicyNet(1, 3, 1, np.array([-2.0]), np.array([2.0]), hidden=(4,), seeds=[0])
    save_policy(net, str(tmp_path / "pend"), task=other)
    code, _, err = cli("imitate", TASK, "--expert", f"policy:{tmp_path / 'pend'}", "--out", tmp_path / "imit", *TINY)
    assert code == 2 and err.startswith("recede: error: argument --expert: policy "), err
    assert "task 'double-integrator' has 2 observations" in err
    assert not os.path.exists(tmp_path / "imit")
