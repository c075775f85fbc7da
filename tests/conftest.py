"""Run every test from a scratch directory: MuJoCo writes MUJOCO_LOG.TXT into the working
directory when it warns (deprecated XML attributes, unstable simulations), and tests must leave
nothing in the user's directory."""

import os

import pytest

# The note recede writes while kernels compile cold (recede/_compile_notice.py) would land in the
# stderr that CLI tests compare, whenever a test happens to be the first to compile a kernel: off
# for the suite (subprocesses inherit it); tests/test_compile_notice.py turns it on where tested.
os.environ["RECEDE_COMPILE_NOTICE"] = "0"


@pytest.fixture(scope="session", autouse=True)
def _scratch_cwd(tmp_path_factory):
    home = os.getcwd()
    had_log = os.path.exists(os.path.join(home, "MUJOCO_LOG.TXT"))
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(home)
    assert had_log or not os.path.exists(os.path.join(home, "MUJOCO_LOG.TXT"))
