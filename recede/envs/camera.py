"""The camera a MuJoCo task's frames are rendered from.

``task.make_env(render_mode="rgb_array", camera=NAME)`` (and ``recede run --video PATH.mp4
--camera NAME``) accepts:

- ``follow``: a tracking camera on the robot's root body (MuJoCo's ``mjCAMERA_TRACKING``, the
  camera dm_control's and Gymnasium's viewers track a body with). It keeps the centre of mass of
  the root's subtree, i.e. of the whole robot, at the centre of the frame, at the distance,
  azimuth and elevation of the environment's own view, so the robot keeps the size it had there.
  The default of every task but Reacher: the walkers travel without bound, and the carts too far
  for the envs' fixed views (InvertedPendulum's frames x in +-0.85 of a +-1 m rail,
  cartpole-swingup-mj's +-2.2 m of an unlimited one).
- ``free``: the environment's own view, fixed in the world (Gymnasium's free camera, pixel for
  pixel what the env renders by itself). The default of Reacher, whose arena it frames.
- the name of a camera of the model, e.g. ``track``: the ``trackcom`` camera that the Gymnasium
  XMLs of HalfCheetah, Hopper, Walker2d, Ant and Humanoid define (closer, from the side).

A camera of the model named ``follow`` or ``free`` is shadowed by these meanings. The camera is a
feature of ``task.make_env``: ``gymnasium.make`` of an id renders as Gymnasium does (the ``free``
view).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from recede.errors import InvalidArgumentError

FOLLOW = "follow"
FREE = "free"
RESERVED = (FOLLOW, FREE)

# render modes that produce frames from an offscreen camera ("human" opens Gymnasium's
# interactive window, whose camera the user drives)
FRAME_MODES = ("rgb_array", "depth_array", "rgbd_tuple")


def camera_names(model) -> tuple[str, ...]:
    """The cameras ``model`` can be rendered from: ``follow``, ``free``, then its own named
    cameras in model order (unnamed ones are left out)."""
    own = (model.camera(i).name for i in range(model.ncam))
    return RESERVED + tuple(name for name in own if name and name not in RESERVED)


def root_body(model) -> int:
    """The robot's root body: the first child of the world body that has a joint (the body of a
    free joint, or of the root slide and hinge joints of a planar robot); 0, the world, if no
    child of the world moves."""
    for body in range(1, model.nbody):
        if model.body_parentid[body] == 0 and model.body_jntnum[body] > 0:
            return body
    return 0


def check_camera(camera: str, cameras: tuple[str, ...], task_name: str) -> None:
    """Raise unless ``camera`` is one of ``cameras`` (the task's, see :func:`camera_names`)."""
    if not isinstance(camera, str) or camera not in cameras:
        raise InvalidArgumentError(
            f"camera must be one of the cameras of {task_name} ({', '.join(cameras)}), got {camera!r}")


def with_camera(env, camera: str | None, default: str, task_name: str):
    """``env`` in a :class:`CameraView` rendering from ``camera`` (``None``: ``default``, the
    task's own choice). An env without a frame ``render_mode`` comes back as it is when ``camera``
    is ``None``; naming a camera for it, or a camera the model lacks, raises (and closes ``env``)."""
    mode = env.render_mode
    try:
        if mode not in FRAME_MODES:
            if camera is None:
                return env
            raise InvalidArgumentError(
                f"camera applies to render_mode 'rgb_array' or 'depth_array', got "
                f"render_mode={mode!r} with camera={camera!r}")
        name = default if camera is None else camera
        check_camera(name, camera_names(env.unwrapped.model), task_name)
    except InvalidArgumentError:
        env.close()
        raise
    return CameraView(env, name)


class CameraView(gym.Wrapper):
    """A MuJoCo env whose ``render()`` draws from ``camera`` (one of :func:`camera_names`; see the
    module docstring) with Gymnasium's offscreen renderer at the env's ``width`` x ``height`` and
    ``render_mode``: the env's own frames, from that camera (``free``: the env's own camera)."""

    def __init__(self, env, camera: str):
        super().__init__(env)
        check_camera(camera, camera_names(env.unwrapped.model), "this env")
        self.camera = camera
        self._viewer = None

    def _make_viewer(self):
        import mujoco
        from gymnasium.envs.mujoco.mujoco_rendering import OffScreenViewer

        base = self.env.unwrapped
        model = base.model
        # a free camera at the median of the geoms, as far as the model's extent (Gymnasium's)
        viewer = OffScreenViewer(model, base.data, base.width, base.height)
        cam = viewer.cam
        config = getattr(getattr(base, "mujoco_renderer", None), "default_cam_config", None) or {}
        if self.camera == FREE:  # then the env's own camera settings, as Gymnasium applies them
            for key, value in config.items():
                if isinstance(value, np.ndarray):
                    getattr(cam, key)[:] = value
                else:
                    setattr(cam, key, value)
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.fixedcamid = -1
        elif self.camera == FOLLOW:  # the env's view, pointed at the root body
            for key in ("distance", "azimuth", "elevation"):
                if key in config:
                    setattr(cam, key, float(config[key]))
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            cam.trackbodyid = root_body(model)
            cam.fixedcamid = -1
        else:
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
        return viewer

    def render(self):
        if self._viewer is None:
            self._viewer = self._make_viewer()
        self._viewer.make_context_current()
        # camera_id=None: render from ``cam`` as set up (an id would reset it to a free camera)
        return self._viewer.render(render_mode=self.env.render_mode, camera_id=None)

    def close(self):
        if self._viewer is not None:
            # Free the GL objects now, in their own context: left to the garbage collector, the
            # MjrContext is freed in whichever context is current then, deleting that context's
            # framebuffer (another env's frames turn black).
            self._viewer.make_context_current()
            self._viewer.con.free()
            self._viewer.close()
            self._viewer = None
        super().close()
