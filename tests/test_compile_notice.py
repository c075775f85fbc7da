"""The one-line note while kernels compile cold (recede/_compile_notice.py), and the progress
bar's clock that leaves the warm-up out (recede.cli._BarClock)."""

import os
import subprocess
import sys
import textwrap

import numba
import pytest

import recede
from recede import _compile_notice
from recede._compile_notice import NOTE, set_compile_notice


@pytest.fixture
def notes(monkeypatch):
    """Collect the notes of this test; no quiet spell carried over from earlier compiles."""
    lines = []
    previous = set_compile_notice(True, write=lines.append)
    monkeypatch.setitem(_compile_notice._state, "last_end", None)
    yield lines
    set_compile_notice(*previous)


def _fresh_kernel(module: str):
    def add_one(x):
        return x + 1

    add_one.__module__ = module
    return numba.njit(add_one)  # no cache: every call of a new dispatcher compiles


def test_a_recede_compile_writes_one_note_per_burst(notes):
    _fresh_kernel("recede.probe")(1)
    assert notes == [NOTE]
    _fresh_kernel("recede.probe")(2.0)  # right after the last compile: the same burst
    assert notes == [NOTE]
    assert not _compile_notice.compiling()


def test_a_compile_after_a_quiet_spell_gets_a_new_note(notes, monkeypatch):
    _fresh_kernel("recede.probe")(1)
    monkeypatch.setitem(_compile_notice._state, "last_end",
                        _compile_notice._state["last_end"] - _compile_notice.QUIET_SECONDS - 1)
    _fresh_kernel("recede.probe")(1)
    assert notes == [NOTE, NOTE]


def test_other_packages_compiles_and_a_disabled_note_stay_silent(notes):
    _fresh_kernel("someone_else")(1)
    assert notes == []
    set_compile_notice(False, write=notes.append)
    _fresh_kernel("recede.probe")(1)
    assert notes == []


def test_note_only_when_compiling_not_when_loading_the_cache(tmp_path):
    """A fresh cache: the first process compiles a small recede kernel (one note), the second
    loads it from the cache (none)."""
    script = textwrap.dedent("""
        import recede
        from recede._numerics import sincos_poly
        recede.set_compile_notice(True, write=lambda line: print("NOTE:", line))
        s, c = sincos_poly(0.0)
        print(s, c)
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                           timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.splitlines() == [f"NOTE: {NOTE}", "0.0 1.0"]
    assert runs[1].stdout.splitlines() == ["0.0 1.0"]


def test_the_environment_variable_turns_it_off():
    code = "import recede, recede._compile_notice as c; print(c._state['enabled'])"
    for value, want in (("0", "False"), ("off", "False"), ("1", "True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, RECEDE_COMPILE_NOTICE=value), timeout=120)
        assert out.stdout.strip() == want, out.stderr


class _FakeBar:
    """The part of tqdm that _BarClock touches, on a clock the test controls."""

    disable = False

    def __init__(self, clock):
        self.clock = clock
        self.start_t = self.last_print_t = clock[0]
        self.written = []

    def _time(self):
        return self.clock[0]

    def write(self, line, file=None):
        self.written.append(line)

    def refresh(self):
        pass


def test_bar_clock_moves_the_start_past_the_warm_up(notes):
    from recede.cli import _BarClock

    clock = [100.0]
    bar = _FakeBar(clock)
    with _BarClock(bar) as bc:
        bc.started()
        clock[0] = 147.0  # a 47 s warm-up
        _compile_notice._state["write"](NOTE)  # a note while the bar is up goes above it
        bc.ready()
        assert bar.start_t == 147.0 and bar.last_print_t == 147.0
        clock[0] = 150.0
        bc.started()  # a second episode: only its own warm-up is cut out
        clock[0] = 151.0
        bc.ready()
        assert bar.start_t == 148.0
    assert bar.written == [NOTE]
    assert _compile_notice._state["write"] == notes.append  # restored


def test_run_progress_rate_excludes_the_warm_up(monkeypatch):
    """Through the CLI, on a fake clock that only moves during the warm-up plan (47 s, standing
    in for a cold compile): once the loop starts, the bar's elapsed time is zero."""
    import tqdm

    from recede.cli import main
    from recede.experiments import episode as episode_module

    clock = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])  # each bar's clock (self._time)
    real = episode_module.make_planner

    def slow_make_planner(*args, **kwargs):
        planner = real(*args, **kwargs)
        plan, calls = planner.plan, []

        def slow_first_plan(*a, **k):
            if not calls:
                clock[0] += 47.0
            calls.append(1)
            return plan(*a, **k)

        planner.plan = slow_first_plan
        return planner

    monkeypatch.setattr(episode_module, "make_planner", slow_make_planner)
    seen = []
    real_update = tqdm.tqdm.update

    def spy_update(self, n=1):
        seen.append(self._time() - self.start_t)
        return real_update(self, n)

    monkeypatch.setattr(tqdm.tqdm, "update", spy_update)
    assert main(["run", "double-integrator", "--steps", "3", "--samples", "16"]) == 0
    assert clock[0] == 1047.0 and seen == [0.0, 0.0, 0.0]
