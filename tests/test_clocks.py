"""Wall time measures the optimizer's own work (issue 12): torch.func's one-time
lazy imports and compilations happen before any clock starts, so the first
curvature rule of a process is not charged for them.

No timings are asserted (shared machines are noisy): what is asserted is that a
run's timed steps import nothing, in a fresh process.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import explorer as ex
from explorer.runs.loop import warm_up_torch_func

warm_up_torch_func()
before = set(sys.modules)
RUNS = [("gaussian_fit", "natural_gradient"), ("gaussian_fit", "gauss_newton"),
        ("moons_mlp", "kfac"), ("tiny_tanh", "newton")]
for problem, rule in RUNS:
    ex.run(ex.RunConfig(problem, {}, rule, steps=2, device="cpu"))
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith("torch"))))
"""


def test_the_timed_steps_import_nothing_after_the_warm_up():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    # before the warm-up, the first vmapped product imported torch._dynamo,
    # torch._decomp, sympy… inside the first curvature rule's timed step
    assert imported == []
