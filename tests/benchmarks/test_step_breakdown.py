"""benchmarks/step_breakdown.py: phases timed exclusively, and a step's phases adding up to the step."""

import importlib.util
import json
import subprocess
import sys

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("step_breakdown", ROOT / "benchmarks" / "step_breakdown.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_phase_called_within_another_is_not_counted_twice(monkeypatch):
    script = _script()
    ticks = iter([0.0, 1.0, 3.0, 6.0, 10.0, 11.0])  # outer starts, inner starts, inner ends, outer ends, ...
    monkeypatch.setattr(script.time, "perf_counter", lambda: next(ticks))
    clock = script.PhaseClock()
    inner = clock.timed("inner", lambda: None)
    outer = clock.timed("outer", lambda: inner())
    outer()
    assert clock.seconds == {"inner": 2.0, "outer": 4.0}  # 6 s in all, 2 of them inside inner
    inner()  # a call of its own: 10 -> 11
    assert clock.seconds == {"inner": 3.0, "outer": 4.0}


def test_one_step_is_the_sum_of_its_phases():
    command = [sys.executable, str(ROOT / "benchmarks" / "step_breakdown.py"), "--steps", "1", "--hidden-dim", "16"]
    proc = subprocess.run([*command, "--batch-size", "32"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["client"] == "Food"
    phases = {key: value for key, value in result.items() if key.endswith("_ms")}
    assert set(phases) == {f"{phase}_ms" for phase in (*_script().PHASES, "other")}
    # every phase the step goes through was reached (4 experts' forward, loss and backward; the gate; L_fuse)
    assert all(value > 0 for key, value in phases.items() if key != "other_ms"), phases
    # one timed step: the phases (rounded to 0.1 ms) add up to the step (rounded to 1 ms)
    assert abs(sum(phases.values()) - 1e3 * result["step_s"]) <= 0.5 + 0.05 * len(phases)
