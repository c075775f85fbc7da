"""How much of a ``recede run --video`` the robot is in: the task's default camera (``follow`` for
the robots that travel) against the camera the videos had before it, the environment's own view.

Reads a run's ``--json`` (its per-step states) and replays the frames the video holds (one after
each step) through both cameras: ``before`` is the env exactly as ``recede run`` made it before
(``gym.make(gym_id, render_mode="rgb_array")``, or ``MujocoTaskEnv`` for our own MuJoCo tasks),
``after`` is ``task.make_env(render_mode="rgb_array")``. A frame shows the robot where rendering
it again with the robot's geoms invisible changes some pixels; it shows the whole robot where those
pixels touch no edge of the image. With ``--video``, each frame of the MP4 is compared with both
replays (mean |pixel difference|): the video is the replay it is closest to.

Usage:
    recede run HalfCheetah-v5 --steps 100 --video c.mp4 --json c.json
    python benchmarks/video_in_view.py c.json --video c.mp4
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def robot_pixels(env, frame: np.ndarray) -> np.ndarray:
    """(H, W) bool: where ``frame`` (``env.render()`` now) shows the robot, i.e. changes when every
    geom not on the world body is made invisible."""
    model = env.unwrapped.model
    robot = model.geom_bodyid != 0
    rgba, matid = model.geom_rgba.copy(), model.geom_matid.copy()
    model.geom_rgba[robot, 3] = 0.0
    model.geom_matid[robot] = -1
    try:
        hidden = env.render()
    finally:
        model.geom_rgba[:], model.geom_matid[:] = rgba, matid
    return np.any(frame != hidden, axis=-1)


def old_env(task):
    """The env ``recede run --video`` rendered before cameras: Gymnasium's own."""
    if getattr(task, "asset", None):
        from recede.envs.mujoco_env import MujocoTaskEnv

        return MujocoTaskEnv(task, render_mode="rgb_array")
    import gymnasium as gym

    return gym.make(task.gym_id, render_mode="rgb_array")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run's --json")
    parser.add_argument("--video", default=None, help="the run's --video, to check the replay")
    args = parser.parse_args()

    from recede.envs import get_task

    with open(args.run, encoding="utf-8") as f:
        record = json.load(f)
    task = get_task(record["task"])
    states = np.array(record["log"]["states"], dtype=np.float64)[1:]  # a frame after each step
    envs = {"before": old_env(task), "after": task.make_env(render_mode="rgb_array")}
    video = None
    if args.video:
        import imageio.v2 as imageio

        video = [np.asarray(frame) for frame in imageio.mimread(args.video, memtest=False)]
        if len(video) != len(states):
            raise SystemExit(f"{args.video} has {len(video)} frames, {args.run} {len(states)} steps")
    seen, whole, diff = ({k: [] for k in envs} for _ in range(3))
    for t, x in enumerate(states):
        for name, env in envs.items():
            base = env.unwrapped
            if t == 0:
                env.reset(seed=record["seed"])
            m = base.model
            base.set_state(x[:m.nq], x[m.nq:m.nq + m.nv])
            frame = env.render()
            mask = robot_pixels(env, frame)
            edge = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
            seen[name].append(mask.any())
            whole[name].append(mask.any() and not edge)
            if video is not None:
                diff[name].append(np.abs(frame.astype(float) - video[t].astype(float)).mean())
    for env in envs.values():
        env.close()
    camera = getattr(envs["after"], "camera", None)
    print(f"{task.name}: {len(states)} frames; root x from {states[0, 0]:.2f} to {states[-1, 0]:.2f} m")
    for name in envs:
        label = "before (env's own view)" if name == "before" else f"after (camera {camera})"
        first_lost = next((t for t, s in enumerate(seen[name]) if not s), None)
        line = (f"  {label:<26} robot in view {np.mean(seen[name]):6.1%}  whole robot in view "
                f"{np.mean(whole[name]):6.1%}  first frame without it: {first_lost}")
        if video is not None:
            line += f"  mean |video - replay| {np.mean(diff[name]):5.1f}"
        print(line)


if __name__ == "__main__":
    main()
