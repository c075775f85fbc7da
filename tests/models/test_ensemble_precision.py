"""Planning precision of the ensemble (bfloat16 where the CPU computes it natively) and the
planning options a run may change.

Oracles: the CPU flag sets themselves (detection), a mocked accuracy check with a known error on
either side of the tolerance (the fallback), and a spy on the forward pass (which precision the
particles actually ran in).
"""

import dataclasses
import warnings

import numpy as np
import pytest

from recede.errors import InvalidArgumentError
from recede.models import ensemble as ens
from recede.models.ensemble import (
    BF16_TOLERANCE, PRECISION_ENV, Ensemble, EnsembleConfig, cpu_flags, native_bf16,
)

# /proc/cpuinfo as Linux writes it (two processors; trimmed)
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx avx2 fma {extra}
bugs\t\t: sysret_ss_attrs

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx avx2 fma {extra}
bugs\t\t: sysret_ss_attrs
"""


@pytest.mark.parametrize("extra, native", [
    ("", False),                                   # AVX2 only (this project's CI machine)
    ("avx512f avx512bw avx512vl", False),          # AVX-512 without BF16: emulated
    ("avx512f avx512_bf16", True),                 # Zen 4 / Cooper Lake: the machine
    ("avx512f amx_tile amx_bf16", True),           # Sapphire Rapids AMX
    ("avx512f amx_tile amx_bf16 avx512_bf16", True),
])
def test_native_bf16_is_avx512_bf16_or_amx_bf16_in_the_flags(extra, native):
    flags = cpu_flags(CPUINFO.format(extra=extra))
    assert flags == frozenset("fpu sse sse2 avx avx2 fma".split() + extra.split())
    assert native_bf16(flags) is native
    assert native_bf16(extra.split()) is native


def test_cpu_flags_without_a_flags_line_is_empty():
    assert cpu_flags("processor : 0\nmodel name : something\n") == frozenset()


def tiny(**options):
    return Ensemble(2, 1, members=2, hidden=8, layers=1, particles=4, seed=0, **options)


def spy(model):
    """Record the ``bf16`` flag of every forward pass of ``model``."""
    calls = []
    real = model._forward_inf

    def forward(feats, bf16=False):
        calls.append(bf16)
        return real(feats, bf16=bf16)

    model._forward_inf = forward
    return calls


def plan_once(model):
    model.rollout_particles(np.zeros(2), np.zeros((3, 4, 1)))


def fake_cpu(monkeypatch, native: bool):
    flags = frozenset({"avx2", "avx512_bf16"} if native else {"avx2"})
    monkeypatch.setattr(ens, "cpu_flags", lambda cpuinfo=None: flags)


def mock_error(monkeypatch, value):
    checked = []

    def error(self, feats):
        checked.append(feats.shape)
        return value

    monkeypatch.setattr(Ensemble, "_bf16_error", error)
    return checked


def test_auto_is_float32_without_native_bf16_and_never_checks(monkeypatch):
    fake_cpu(monkeypatch, native=False)
    checked = mock_error(monkeypatch, 0.0)
    m = tiny(precision="auto")
    calls = spy(m)
    plan_once(m)
    assert set(calls) == {False} and checked == []
    assert m.precision_note.startswith("float32 (auto: this CPU has no native bfloat16")


def test_auto_is_bfloat16_on_native_cpus_when_accurate(monkeypatch):
    fake_cpu(monkeypatch, native=True)
    checked = mock_error(monkeypatch, BF16_TOLERANCE / 2)
    m = tiny(precision="auto")
    calls = spy(m)
    plan_once(m)
    plan_once(m)
    assert len(checked) == 1  # decided once, on the first planning batch
    assert calls and set(calls) == {True}
    assert m.precision_note.startswith("bfloat16 (auto: native")
    # step, rollout and predict (the mean model, iLQR's) stay float32
    calls.clear()
    m.rollout(np.zeros(2), np.zeros((3, 4, 1)))
    m.predict(np.zeros((3, 2)), np.zeros((3, 1)))
    assert calls and set(calls) == {False}


def test_auto_falls_back_to_float32_with_a_warning_when_bf16_is_inaccurate(monkeypatch):
    fake_cpu(monkeypatch, native=True)
    mock_error(monkeypatch, BF16_TOLERANCE * 2)
    m = tiny(precision="auto")
    calls = spy(m)
    with pytest.warns(RuntimeWarning, match="above the tolerance"):
        plan_once(m)
    assert set(calls) == {False}
    assert m.precision_note.startswith("float32 (auto: bfloat16 was")


def test_new_weights_decide_again(monkeypatch):
    fake_cpu(monkeypatch, native=True)
    checked = mock_error(monkeypatch, 0.0)
    m = tiny(precision="auto")
    plan_once(m)
    m._fold()  # what fit and load end with
    assert m.precision_note == ""
    plan_once(m)
    assert len(checked) == 2


@pytest.mark.parametrize("precision, native, expect", [
    ("float32", True, False), ("bfloat16", False, True), ("bfloat16", True, True),
])
def test_explicit_precision_is_obeyed(monkeypatch, precision, native, expect):
    fake_cpu(monkeypatch, native=native)
    mock_error(monkeypatch, 1.0)  # even when inaccurate: the user asked
    m = tiny(precision=precision)
    calls = spy(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_once(m)
    assert set(calls) == {expect}
    assert m.precision_note.startswith(precision)


def test_auto_on_this_machine_follows_its_flags():
    m = tiny(precision="auto")
    calls = spy(m)
    plan_once(m)
    if not native_bf16(cpu_flags()):
        assert set(calls) == {False} and "no native bfloat16" in m.precision_note


def test_bfloat16_predictions_are_close_to_float32():
    """The real autocast path (slow where emulated, but right everywhere): the particles of the
    mean propagation in bfloat16 follow float32's to within bfloat16's rounding."""
    a = tiny(precision="float32", propagation="mean")
    b = tiny(precision="bfloat16", propagation="mean")
    x0, U = np.array([0.3, -0.2]), np.random.default_rng(0).uniform(-1, 1, (5, 6, 1))
    Xa, _, _ = a.rollout_particles(x0, U)
    Xb, _, _ = b.rollout_particles(x0, U)
    assert not np.array_equal(Xa, Xb)
    np.testing.assert_allclose(Xb, Xa, atol=0.05)


def test_precision_from_the_environment(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "float32")
    assert tiny().precision == "float32"
    assert tiny(precision="auto").precision == "auto"  # the argument wins
    monkeypatch.setenv(PRECISION_ENV, "fp8")
    with pytest.raises(InvalidArgumentError, match=r"precision \(from \$RECEDE_ENSEMBLE_PRECISION\) "
                                                   r"must be one of \['auto', 'float32', 'bfloat16'\], got 'fp8'"):
        tiny()
    with pytest.raises(InvalidArgumentError, match="precision must be one of"):
        tiny(precision="half")


def test_set_planning_changes_only_how_the_model_is_planned_on():
    m = tiny()
    m.set_planning(propagation="mean", particles=1, disagreement_weight=0.5, precision="float32")
    c = m.config
    assert (c.propagation.value, c.particles, c.disagreement_weight, m.precision) == ("mean", 1, 0.5, "float32")
    assert "propagation=mean, particles=1, disagreement_weight=0.5, precision=float32" in repr(m)
    with pytest.raises(InvalidArgumentError, match="model option 'hidden' is fixed by the trained model"):
        m.set_planning(hidden=16)
    with pytest.raises(InvalidArgumentError, match="particles must be"):
        m.set_planning(particles=0)
    with pytest.raises(InvalidArgumentError, match="precision must be one of"):
        m.set_planning(precision="fp16")


def test_precision_is_not_part_of_the_saved_configuration():
    c = EnsembleConfig(members=2)
    assert "bf16" not in c.to_json() and "precision" not in c.to_json()
    # checkpoints written before precision carry bf16: read and ignored
    assert EnsembleConfig(**{**c.to_json(), "bf16": True}) == c
    assert dataclasses.replace(c, particles=3).particles == 3
    with pytest.raises(InvalidArgumentError, match="precision='bfloat16'"):
        Ensemble(2, 1, bf16=True)
