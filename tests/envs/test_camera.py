"""The camera a task's frames come from (recede.envs.camera): the default tracks the robot, so a
HalfCheetah that runs 10 m stays in every frame where the env's own fixed view loses it.

The oracle for "the robot is in the frame": render the frame twice through ``env.render()``, once
as it is and once with the robot's geoms made invisible; the pixels that differ are the robot
(with its reflection). It reads nothing of the camera under test."""

import os

import gymnasium as gym
import numpy as np
import pytest

from recede.cli import main
from recede.envs import GYM_TASKS, TASKS, get_task
from recede.envs.camera import FOLLOW, FREE, CameraView, root_body
from recede.errors import InvalidArgumentError

os.environ.setdefault("MUJOCO_GL", "egl")

SIZE = {"width": 160, "height": 120}  # small frames: the oracle renders each one twice
FRAMES, STRIDE = 20, 0.5  # the cheetah travels FRAMES * STRIDE = 10 m


def fast(env):
    """``env`` with a 512-texel shadow map and no multisampling (read when the renderer starts):
    a frame takes ~15 ms instead of ~300 ms on a CPU renderer; the camera is unchanged."""
    quality = env.unwrapped.model.vis.quality
    quality.shadowsize, quality.offsamples = 512, 0
    return env


def robot_pixels(env) -> np.ndarray:
    """(H, W) bool: the pixels of ``env.render()`` that show the robot (every geom not on the
    world body), found by rendering again with those geoms invisible."""
    model = env.unwrapped.model
    robot = model.geom_bodyid != 0
    frame = env.render()
    rgba, matid = model.geom_rgba.copy(), model.geom_matid.copy()
    model.geom_rgba[robot, 3] = 0.0
    model.geom_matid[robot] = -1  # a material's colour would override the alpha
    try:
        hidden = env.render()
    finally:
        model.geom_rgba[:], model.geom_matid[:] = rgba, matid
    return np.any(frame != hidden, axis=-1)


def run_cheetah(env):
    """Reset, then per frame: one step under a seeded random action and the root slider moved
    ``STRIDE`` further along x; returns the robot's pixels of every frame and the distance run."""
    env.reset(seed=0)
    env.action_space.seed(0)
    base = env.unwrapped
    x0 = base.data.qpos[0]
    masks = []
    for t in range(1, FRAMES + 1):
        env.step(env.action_space.sample())
        qpos = base.data.qpos.copy()
        qpos[0] = x0 + STRIDE * t
        base.set_state(qpos, base.data.qvel.copy())
        masks.append(robot_pixels(env))
    return np.array(masks), base.data.qpos[0] - x0


def test_the_default_camera_keeps_the_running_cheetah_whole_in_every_frame():
    env = fast(get_task("HalfCheetah-v5").make_env(render_mode="rgb_array", **SIZE))
    assert isinstance(env, CameraView) and env.camera == FOLLOW
    masks, travelled = run_cheetah(env)
    env.close()
    assert travelled == pytest.approx(FRAMES * STRIDE)
    counts = masks.sum(axis=(1, 2))
    assert counts.min() >= 0.5 * counts[0] > 0  # every frame shows the robot, at its size
    border = masks[:, 0, :].any(1) | masks[:, -1, :].any(1) | masks[:, :, 0].any(1) | masks[:, :, -1].any(1)
    assert not border.any()  # and all of it: it touches no edge of the image


def test_the_envs_own_fixed_view_loses_the_cheetah():
    """The same run filmed by the env's own camera (``free``, what ``recede run --video`` showed
    before): the cheetah leaves the frame, so the test above can fail."""
    env = fast(get_task("HalfCheetah-v5").make_env(render_mode="rgb_array", camera=FREE, **SIZE))
    masks, _ = run_cheetah(env)
    env.close()
    counts = masks.sum(axis=(1, 2))
    assert counts[0] > 0 and counts[-1] == 0
    assert (counts == 0).sum() >= FRAMES // 2


@pytest.mark.parametrize("gym_id", ["Reacher-v5", "HalfCheetah-v5"])
def test_free_is_gymnasiums_own_frame(gym_id):
    ours = fast(get_task(gym_id).make_env(render_mode="rgb_array", camera=FREE, **SIZE))
    theirs = fast(gym.make(gym_id, render_mode="rgb_array", **SIZE))
    ours.reset(seed=3), theirs.reset(seed=3)
    np.testing.assert_array_equal(ours.render(), theirs.render())
    ours.close(), theirs.close()


def test_a_named_camera_is_the_models_camera():
    """camera="track": HalfCheetah's XML camera (``trackcom``), pixel for pixel as Gymnasium
    renders it by name; it follows the cheetah too."""
    ours = fast(get_task("HalfCheetah-v5").make_env(render_mode="rgb_array", camera="track", **SIZE))
    theirs = fast(gym.make("HalfCheetah-v5", render_mode="rgb_array", camera_name="track", **SIZE))
    ours.reset(seed=1), theirs.reset(seed=1)
    np.testing.assert_array_equal(ours.render(), theirs.render())
    theirs.close()
    masks, _ = run_cheetah(ours)
    ours.close()
    assert masks.sum(axis=(1, 2)).min() > 0


def test_cameras_of_every_renderable_task():
    for task in (*TASKS.values(), *GYM_TASKS.values()):
        if not task.can_render:
            assert task.cameras() == ()
            continue
        cameras = task.cameras()
        assert cameras[:2] == (FOLLOW, FREE) and task.default_camera in cameras
    assert get_task("HalfCheetah-v5").cameras() == ("follow", "free", "track")
    assert get_task("reacher").default_camera == FREE  # its own view frames the whole arena


@pytest.mark.parametrize("name, body", [("HalfCheetah-v5", "torso"), ("Ant-v5", "torso"),
                                        ("Hopper-v5", "torso"), ("Humanoid-v5", "torso"),
                                        ("InvertedPendulum-v5", "cart"), ("cartpole-swingup-mj", "cart")])
def test_follow_tracks_the_root_body(name, body):
    env = get_task(name).make_env()
    model = env.unwrapped.model
    assert model.body(root_body(model)).name == body
    env.close()


def test_follow_renders_depth_too():
    env = fast(get_task("cartpole-swingup-mj").make_env(render_mode="depth_array", **SIZE))
    env.reset(seed=0)
    depth = env.render()
    env.close()
    assert depth.shape == (SIZE["height"], SIZE["width"]) and np.isfinite(depth).all()


def test_bad_cameras_are_refused():
    task = get_task("HalfCheetah-v5")
    with pytest.raises(InvalidArgumentError) as e:
        task.make_env(render_mode="rgb_array", camera="top")
    assert str(e.value) == "camera must be one of the cameras of half-cheetah (follow, free, track), got 'top'"
    with pytest.raises(InvalidArgumentError) as e:
        task.make_env(camera="track")
    assert str(e.value) == ("camera applies to render_mode 'rgb_array' or 'depth_array', got "
                            "render_mode=None with camera='track'")
    with pytest.raises(InvalidArgumentError) as e:
        get_task("pendulum-swingup").make_env(camera="follow")
    assert str(e.value) == ("camera applies to MuJoCo tasks; task 'pendulum-swingup' has no MuJoCo "
                            "model to render, got camera='follow'")
    env = task.make_env()  # no render mode, no camera: the env as Gymnasium makes it
    assert not isinstance(env, CameraView)
    env.close()


def _no_run(*args, **kwargs):
    raise AssertionError("the run started")


@pytest.mark.parametrize("argv, message", [
    (["--camera", "top", "--video", "{mp4}"],
     "argument --camera: unknown camera 'top' for half-cheetah; its cameras: follow, free, track"),
    (["--camera", "track"],
     "argument --camera: needs --video PATH.mp4 (the camera films the video), got --camera 'track' "
     "without it"),
])
def test_cli_refuses_a_bad_camera_before_the_run(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("recede.experiments.run_episode", _no_run)
    argv = [a.format(mp4=tmp_path / "c.mp4") for a in argv]
    assert main(["run", "HalfCheetah-v5", "--no-progress", *argv]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"recede: error: {message}"
    assert not list(tmp_path.iterdir())


def test_cli_films_from_the_named_camera(tmp_path, capsys, monkeypatch):
    used = []
    render = CameraView.render

    def spy(self):
        used.append(self.camera)
        return render(self)

    monkeypatch.setattr(CameraView, "render", spy)
    mp4 = tmp_path / "c.mp4"
    code = main(["run", "HalfCheetah-v5", "--steps", "3", "--samples", "8", "--iterations", "1",
                 "--horizon", "5", "--no-progress", "--video", str(mp4), "--camera", "track"])
    assert code == 0, capsys.readouterr().err
    assert used == ["track"] * 3
    assert f"{mp4} (camera: track)" in capsys.readouterr().out
    assert mp4.stat().st_size > 1000
