"""The screen's Poisson quantile matches scipy.stats (which the plan command no longer imports: ~1 s)."""

import numpy as np
import pytest
from scipy.stats import poisson

from fleetwise.perf.analytic import EXACT_POISSON_MEAN, poisson_quantile


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_poisson_quantile_is_scipys(q):
    exact = np.concatenate([[0.0], np.geomspace(1e-4, EXACT_POISSON_MEAN, 2000), np.linspace(0, 5, 101)])
    assert np.array_equal(poisson_quantile(q, exact), poisson.ppf(q, exact))
    large = np.geomspace(EXACT_POISSON_MEAN * 1.01, 1e5, 300)
    assert np.max(np.abs(poisson_quantile(q, large) - poisson.ppf(q, large))) <= 1


def test_plan_does_not_import_scipy_stats():
    import subprocess
    import sys

    code = ("import sys; from fleetwise.plan.search import SLO, PlanRequest, plan; "
            "from fleetwise.plan.workload import get_workload; "
            "plan(PlanRequest(['llama-3.1-8b'], get_workload('chat'), SLO(1000, 50), gpus=['l4'], verify_top=1)); "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
