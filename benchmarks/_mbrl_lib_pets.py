#!/usr/bin/env python
"""mbrl-lib 0.2.0 (facebookresearch) PETS on a cart-pole, as a peer reference for our PETS.

Standalone: imports only numpy, torch, omegaconf/hydra, gymnasium and ``mbrl``, because
mbrl-lib lives in its own virtual environment (it needs numpy<2 and hydra/omegaconf), and this
file is run with that environment's interpreter, e.g.

    /tmp/mbrl_venv/bin/python benchmarks/_mbrl_lib_pets.py --repeats 5

Everything is built with mbrl-lib's own API, the way ``mbrl/algorithms/pets.py`` does it
(``create_one_dim_tr_model`` -> ``OneDTransitionRewardModel(GaussianMLP)``,
``create_replay_buffer`` + ``rollout_agent_trajectories(RandomAgent)``,
``get_basic_buffer_iterators``, ``ModelTrainer``, ``ModelEnv``,
``create_trajectory_optim_agent_for_model`` -> ``TrajectoryOptimizerAgent(CEMOptimizer)``), with
the configuration of its examples (``conf/algorithm/pets.yaml``,
``conf/dynamics_model/gaussian_mlp_ensemble.yaml``, ``conf/action_optimizer/cem.yaml``,
``conf/overrides/pets_cartpole.yaml``) except where this benchmark pins other values:

    model     GaussianMLP, ensemble_size 5 (example: 7), num_layers 4, hid_size 200, SiLU,
              deterministic False, propagation_method "fixed_model" (TSinf; example:
              random_model = TS1), learn_logvar_bounds False;
              OneDTransitionRewardModel(target_is_delta=True, normalize=True,
              normalize_double_precision=True, learned_rewards=False)
    training  ModelTrainer, Adam lr 1e-3, weight_decay 5e-5 (example: 7.5e-4 / 3e-5),
              validation ratio 0.1 (example: 0), bootstrap iterators (sampling with
              replacement), batch 256 and 32; one epoch = ``trainer.train(..., num_epochs=1)``
    planning  TrajectoryOptimizerAgent, replan_freq 1, planning_horizon 15, CEMOptimizer
              population 350, 5 iterations, elite_ratio 0.1, alpha 0.1,
              return_mean_elites True, truncated-normal sampling (clipped_normal False);
              ModelEnv with 20 particles per action sequence (350 * 20 = 7000 model rows per
              step, 15 steps, 5 iterations per ``act``).

Environment: a hand-written Euler cart-pole swing-up (mbrl-lib's mujoco PETS cart-pole needs
mujoco): cart 1 kg, pole 0.1 kg (uniform rod, half-length 0.5), g 9.81, dt 0.05, action in
[-1, 1] scaling a 10 N force. Observation [x, theta, xdot, thetadot] with theta = 0 hanging down
(the layout of mbrl-lib's ``pets_cartpole``). The reward is mbrl-lib's own
``reward_fns.cartpole_pets`` (the PETS swing-up reward, tip near the top) and the termination
function is ``termination_fns.no_termination``, the pair mbrl-lib uses for
``cartpole_pets_version``. Data: 10,000 transitions from ``RandomAgent`` in 50 episodes of 200
steps, each started hanging down with N(0, 0.05^2) noise on every coordinate (random forces
make the pole whirl: theta and x drift far, so with the raw state the ensemble learns the
thetadot delta slowly; ``--angle-features`` gives it sin/cos of theta instead, as mbrl-lib's
``pets_cartpole_paper_version`` does with ``obs_process_fn``, model in_size 6).

Timing: ``time.perf_counter`` around whole calls. Training: one warm-up ``train`` call, then
``--repeats`` timed ones (each call is what mbrl-lib runs per ``num_epochs=1``: an evaluation of
the validation set before the epoch, the epoch, an evaluation after it and a deepcopy of the
state dict when it improved); ``epoch_noeval`` is the same with ``evaluate=False`` (the bare
epoch). Planning: one warm-up ``agent.act(obs)``, then ``--repeats`` timed ones, with torch's
default thread count and with 1 thread.

Validation scores are mbrl-lib's: ``ModelTrainer.evaluate`` is the MSE of the ensemble means
against the raw (un-normalised) delta targets, averaged over samples and dimensions, one
value per member; ``val_score`` is its mean over members, as ``ModelTrainer.train`` returns it.
``val_nll`` uses ``mbrl.util.math.gaussian_nll`` (its convention: err^2 / var + log var, no 1/2
and no log 2 pi), averaged over samples, dimensions and members.

Machine load: on a small box another busy process makes OpenMP's multi-threaded kernels
collapse (a 2-thread matmul ran ~10x slower than a 1-thread one while another job held a core),
so the JSON carries ``machine_start``/``machine_end`` (load average and the GFLOP/s of a
1400x200x200 matmul with 1 thread and with torch's default N threads) and ``contended``
(N-thread matmul below 1.2x the 1-thread one). ``--wait-quiet S`` waits up to S seconds for an
uncontended start; ``--threads N`` sets torch's thread count for training and the main planning
timing (planning is always also timed with 1 thread).

The last line on stdout is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import gymnasium as gym
import mbrl
import mbrl.models
import mbrl.planning
import mbrl.util.common
import mbrl.util.math
import numpy as np
import omegaconf
import torch
from mbrl.env import reward_fns, termination_fns

OBS_DIM, ACT_DIM = 4, 1
DATASET_SIZE = 10_000
EPISODE_LEN = 200
ENSEMBLE_SIZE = 5
NUM_PARTICLES = 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# environment: Euler cart-pole swing-up, obs [x, theta, xdot, thetadot], theta = 0 down
# --------------------------------------------------------------------------
class SwingUpCartPole(gym.Env):
    gravity, masscart, masspole, half_length = 9.81, 1.0, 0.1, 0.5
    force_mag, tau = 10.0, 0.05

    def __init__(self, start_spread: float = 0.05):
        self.start_spread = start_spread
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)
        high = np.full(OBS_DIM, np.inf, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.state = np.zeros(OBS_DIM)

    def reset(self, seed=None, options=None):
        """Hanging down (theta = 0), each coordinate perturbed by N(0, start_spread^2)."""
        super().reset(seed=seed)
        self.state = self.np_random.normal(0.0, self.start_spread, OBS_DIM)
        return self.state.astype(np.float32), {}

    def step(self, action):
        x, th, xd, thd = self.state
        force = float(np.clip(np.asarray(action).reshape(-1)[0], -1, 1)) * self.force_mag
        # classic cart-pole equations in the angle from upright, phi = theta - pi
        s, c = -math.sin(th), -math.cos(th)
        total = self.masscart + self.masspole
        pml = self.masspole * self.half_length
        temp = (force + pml * thd ** 2 * s) / total
        phiacc = (self.gravity * s - c * temp) / (
            self.half_length * (4.0 / 3.0 - self.masspole * c ** 2 / total))
        xacc = temp - pml * phiacc * c / total
        x, th = x + self.tau * xd, th + self.tau * thd
        xd, thd = xd + self.tau * xacc, thd + self.tau * phiacc
        self.state = np.array([x, th, xd, thd])
        obs = self.state.astype(np.float32)
        r = reward_fns.cartpole_pets(torch.from_numpy(np.asarray(action, np.float32)).view(1, -1),
                                     torch.from_numpy(obs).view(1, -1)).item()
        return obs, r, False, False, {}


def angle_features(state):
    """[x, theta, xdot, thetadot] -> [sin theta, cos theta, x, xdot, thetadot], the layout of
    ``mbrl.env.pets_cartpole.CartPoleEnv.preprocess_fn`` (which can't be imported without
    mujoco); used as the model's ``obs_process_fn`` with ``--angle-features``."""
    if isinstance(state, np.ndarray):
        return np.concatenate([np.sin(state[..., 1:2]), np.cos(state[..., 1:2]),
                               state[..., :1], state[..., 2:]], axis=-1)
    return torch.cat([torch.sin(state[..., 1:2]), torch.cos(state[..., 1:2]),
                      state[..., :1], state[..., 2:]], dim=-1)


# --------------------------------------------------------------------------
# configuration, as the hydra conf of mbrl-lib's examples would compose it
# --------------------------------------------------------------------------
def make_cfg(batch_size: int, angle_feats: bool = False) -> omegaconf.DictConfig:
    cfg = omegaconf.OmegaConf.create({
        "seed": 0,
        "device": "cpu",
        "dynamics_model": {
            "_target_": "mbrl.models.GaussianMLP",
            "device": "${device}",
            "num_layers": 4,
            "in_size": "???",
            "out_size": "???",
            "ensemble_size": ENSEMBLE_SIZE,
            "hid_size": 200,
            "deterministic": False,
            "propagation_method": "fixed_model",
            "learn_logvar_bounds": False,
            # hydra >= 1.1 instantiates nested _target_ configs; GaussianMLP wants the
            # activation's *config* (it instantiates it itself), so don't recurse.
            "_recursive_": False,
            "activation_fn_cfg": {"_target_": "torch.nn.SiLU"},
        },
        "algorithm": {
            "name": "pets",
            "agent": {
                "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
                # same reason: TrajectoryOptimizer instantiates optimizer_cfg itself
                "_recursive_": False,
                "action_lb": "???",
                "action_ub": "???",
                "planning_horizon": "${overrides.planning_horizon}",
                "optimizer_cfg": "${action_optimizer}",
                "replan_freq": 1,
                "verbose": False,
            },
            "normalize": True,
            "normalize_double_precision": True,
            "target_is_delta": True,
            "learned_rewards": False,
            "num_particles": NUM_PARTICLES,
            "dataset_size": DATASET_SIZE,
        },
        "overrides": {
            "env": "euler_cartpole_swingup",
            "learned_rewards": False,
            "trial_length": EPISODE_LEN,
            "num_steps": DATASET_SIZE,
            "num_elites": ENSEMBLE_SIZE,
            "model_lr": 1e-3,
            "model_wd": 5e-5,
            "model_batch_size": batch_size,
            "validation_ratio": 0.1,
            "planning_horizon": 15,
            "cem_num_iters": 5,
            "cem_elite_ratio": 0.1,
            "cem_population_size": 350,
            "cem_alpha": 0.1,
            "cem_clipped_normal": False,
        },
        "action_optimizer": {
            "_target_": "mbrl.planning.CEMOptimizer",
            "num_iterations": "${overrides.cem_num_iters}",
            "elite_ratio": "${overrides.cem_elite_ratio}",
            "population_size": "${overrides.cem_population_size}",
            "alpha": "${overrides.cem_alpha}",
            "lower_bound": "???",
            "upper_bound": "???",
            "return_mean_elites": True,
            "device": "${device}",
            "clipped_normal": "${overrides.cem_clipped_normal}",
        },
    })
    if angle_feats:  # as conf/overrides/pets_cartpole_paper_version.yaml does it
        cfg.overrides.obs_process_fn = f"{__name__}.angle_features"
        cfg.dynamics_model.in_size = OBS_DIM + 1 + ACT_DIM
    return cfg


def make_buffer(cfg, env, seed: int):
    rng = np.random.default_rng(seed)
    buf = mbrl.util.common.create_replay_buffer(
        cfg, env.observation_space.shape, env.action_space.shape, rng=rng,
        obs_type=np.double, action_type=np.double, reward_type=np.double)  # as pets.py
    env.action_space.seed(seed)
    env.reset(seed=seed)
    mbrl.util.common.rollout_agent_trajectories(
        env, DATASET_SIZE, mbrl.planning.RandomAgent(env), {},
        trial_length=EPISODE_LEN, replay_buffer=buf)
    return buf


def calibrate(threads: int, n: int = 50) -> float:
    """GFLOP/s of a 1400x200 @ 200x200 float32 matmul (one ensemble member's hidden layer at
    planning size): a quick check of how much of the CPU this process actually gets."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(1400, 200), torch.randn(200, 200)
    for _ in range(5):
        a @ b
    t0 = time.perf_counter()
    for _ in range(n):
        a @ b
    dt = (time.perf_counter() - t0) / n
    torch.set_num_threads(old)
    return 2 * 1400 * 200 * 200 / dt / 1e9


def machine_state(n: int) -> dict:
    return {"loadavg": list(os.getloadavg()),
            "matmul_gflops_1thread": calibrate(1),
            "matmul_threads": n,
            "matmul_gflops_nthreads": calibrate(n)}


def is_contended(m: dict) -> bool:
    if m["matmul_threads"] == 1:
        return False
    return m["matmul_gflops_nthreads"] < 1.2 * m["matmul_gflops_1thread"]


def wait_quiet(max_s: float, n: int) -> dict:
    t0 = time.perf_counter()
    while True:
        m = machine_state(n)
        if not is_contended(m) or time.perf_counter() - t0 > max_s:
            return m
        log(f"machine busy ({m}), waiting")
        time.sleep(5)


def val_nll(model, val_iter) -> float:
    """mbrl's gaussian_nll on the validation set, averaged over samples, dims and members."""
    tot, n = 0.0, 0
    with torch.no_grad():
        for batch in val_iter:
            model_in, target = model._process_batch(batch)
            mean, logvar = model.model.forward(model_in, use_propagation=False)
            nll = mbrl.util.math.gaussian_nll(mean, logvar, target.expand_as(mean), reduce=False)
            tot += nll.mean(dim=(0, 2)).sum().item()
            n += target.shape[0]
    return tot / n


def bench_training(env, buf, batch_size: int, repeats: int, seed: int, angle_feats: bool):
    torch.manual_seed(seed)
    cfg = make_cfg(batch_size, angle_feats)
    model = mbrl.util.common.create_one_dim_tr_model(
        cfg, env.observation_space.shape, env.action_space.shape)
    trainer = mbrl.models.ModelTrainer(
        model, optim_lr=cfg.overrides.model_lr, weight_decay=cfg.overrides.model_wd)
    model.update_normalizer(buf.get_all())  # as train_model_and_save_model_and_data
    train_iter, val_iter = mbrl.util.common.get_basic_buffer_iterators(
        buf, batch_size, cfg.overrides.validation_ratio, ensemble_size=ENSEMBLE_SIZE,
        shuffle_each_epoch=True, bootstrap_permutes=False)
    n_batches = len(train_iter)

    times, scores, losses = [], [], []
    for i in range(1 + repeats):
        t0 = time.perf_counter()
        tr_loss, val = trainer.train(train_iter, dataset_val=val_iter, num_epochs=1, silent=True)
        dt = time.perf_counter() - t0
        if i > 0:
            times.append(dt)
        scores.append(val[-1])
        losses.append(tr_loss[-1])
        log(f"  b{batch_size} epoch {i}{' (warm-up)' if i == 0 else ''}: {dt:.3f} s, "
            f"train loss {tr_loss[-1]:.4f}, val mse {val[-1]:.6f}")
    noeval = []
    for _ in range(max(1, repeats // 2)):
        t0 = time.perf_counter()
        trainer.train(train_iter, num_epochs=1, evaluate=False, silent=True)
        noeval.append(time.perf_counter() - t0)
    per_member = trainer.evaluate(val_iter)
    out = {
        f"epoch_s_median_b{batch_size}": statistics.median(times),
        f"epoch_s_all_b{batch_size}": times,
        f"epoch_noeval_s_median_b{batch_size}": statistics.median(noeval),
        f"epoch_noeval_s_all_b{batch_size}": noeval,
        f"batches_per_epoch_b{batch_size}": n_batches,
        f"train_size_b{batch_size}": train_iter.num_stored,
        f"val_size_b{batch_size}": val_iter.num_stored,
        f"epochs_trained_b{batch_size}": 1 + repeats + len(noeval),
        f"train_loss_b{batch_size}": losses,
        f"val_score_b{batch_size}": scores,  # mean-over-members val MSE after each timed call
        f"val_score_final_per_member_b{batch_size}": per_member.tolist(),
        f"val_nll_final_b{batch_size}": val_nll(model, val_iter),
    }
    return out, model, cfg


def bench_planning(env, model, cfg, repeats: int, threads: int, seed: int):
    torch.set_num_threads(threads)
    gen = torch.Generator(device=cfg.device)
    gen.manual_seed(seed)
    model_env = mbrl.models.ModelEnv(env, model, termination_fns.no_termination,
                                     reward_fns.cartpole_pets, generator=gen)
    agent = mbrl.planning.create_trajectory_optim_agent_for_model(
        model_env, cfg.algorithm.agent, num_particles=cfg.algorithm.num_particles)
    real = SwingUpCartPole(start_spread=0.0)
    obs, _ = real.reset(seed=seed)
    agent.reset()
    times, actions = [], []
    for i in range(1 + repeats):
        t0 = time.perf_counter()
        a = agent.act(obs)
        dt = time.perf_counter() - t0
        if i > 0:
            times.append(dt)
        actions.append(float(np.asarray(a).reshape(-1)[0]))
        obs, *_ = real.step(a)
        log(f"  plan threads={threads} call {i}{' (warm-up)' if i == 0 else ''}: {dt:.3f} s")
    return times, actions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed calls after one warm-up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for the CPU to be free of other load first")
    p.add_argument("--angle-features", action="store_true",
                   help="feed the model [sin th, cos th, x, xdot, thdot] (obs_process_fn, as "
                        "mbrl-lib's pets_cartpole_paper_version) instead of the raw state")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for training and the main planning timing "
                        "(default: torch's default); planning is also timed with 1 thread")
    args = p.parse_args(argv)

    res_torch_default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    default_threads = torch.get_num_threads()
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    state_start = wait_quiet(args.wait_quiet, res_torch_default_threads)
    t_start = time.perf_counter()
    log(f"machine at start: {state_start}")

    env = SwingUpCartPole()
    buf = make_buffer(make_cfg(256), env, args.seed)
    log(f"replay buffer: {buf.num_stored} transitions")

    res = {
        "library": "mbrl-lib",
        "mbrl_version": mbrl.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": default_threads,
        "torch_default_threads": res_torch_default_threads,
        "device": "cpu",
        "repeats": args.repeats,
        "dataset_size": buf.num_stored,
        "config": {
            "ensemble_size": ENSEMBLE_SIZE, "num_layers": 4, "hid_size": 200,
            "activation": "SiLU", "deterministic": False, "propagation_method": "fixed_model",
            "target_is_delta": True, "normalize": True, "normalize_double_precision": True,
            "learned_rewards": False, "lr": 1e-3, "weight_decay": 5e-5,
            "validation_ratio": 0.1, "bootstrap": "with replacement",
            "population_size": 350, "num_iterations": 5, "elite_ratio": 0.1, "alpha": 0.1,
            "return_mean_elites": True, "planning_horizon": 15, "num_particles": NUM_PARTICLES,
            "replan_freq": 1, "reward_fn": "mbrl.env.reward_fns.cartpole_pets",
            "termination_fn": "mbrl.env.termination_fns.no_termination",
            "obs_process_fn": "angle_features" if args.angle_features else None,
        },
        "model_rows_per_act": 350 * NUM_PARTICLES * 15 * 5,
    }

    torch.set_num_threads(default_threads)
    log("training, batch 256")
    out256, model, cfg = bench_training(env, buf, 256, args.repeats, args.seed,
                                        args.angle_features)
    res.update(out256)
    log("training, batch 32")
    out32, _, _ = bench_training(env, buf, 32, max(3, args.repeats // 2 + 1), args.seed,
                                 args.angle_features)
    res.update(out32)
    res["val_score"] = res["val_score_b256"][-1]
    res["val_nll"] = res["val_nll_final_b256"]

    log("planning (model trained with batch 256)")
    plan = {}
    for th in sorted({default_threads, 1}, reverse=True):
        times, actions = bench_planning(env, model, cfg, args.repeats, th, args.seed)
        plan[th] = (times, actions)
    torch.set_num_threads(default_threads)
    res["plan_s_median"] = statistics.median(plan[default_threads][0])
    res["plan_s_all"] = plan[default_threads][0]
    res["plan_s_median_1thread"] = statistics.median(plan[1][0])
    res["plan_s_all_1thread"] = plan[1][0]
    res["plan_first_actions"] = plan[default_threads][1]
    res["total_s"] = time.perf_counter() - t_start
    res["machine_start"] = state_start
    res["machine_end"] = machine_state(res_torch_default_threads)
    # Another busy process on a 2-core box makes OpenMP's multi-thread kernels collapse (threads
    # wait on a descheduled peer); the numbers are then not comparable. Flag it. (loadavg is
    # reported but not used: this run's own threads raise it.)
    res["contended"] = any(is_contended(m) for m in (res["machine_start"], res["machine_end"]))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
