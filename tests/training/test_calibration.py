"""Interval calibration at export: split-conformal scores, applied with the format's map (the map
itself, shared with the service, is tested in tests/contract)."""

import numpy as np

from forecaster_format import conformal_map
from training.evaluation import conformal_scores, interval_coverage


def test_conformal_scores_reach_nominal_coverage_on_exchangeable_data() -> None:
    rng = np.random.default_rng(0)
    # MC spread 1, true errors heavy-tailed (Student t, 3 dof) with scale 3: raw MC is overconfident
    fit_truth, check_truth = 3 * rng.standard_t(3, (2, 2000, 4))
    fit_samples, check_samples = rng.standard_normal((2, 100, 2000, 4))
    levels = [0.5, 0.8, 0.9, 0.95]
    scores = conformal_scores(fit_samples, fit_truth, tuple(levels))
    assert len(scores) == 4
    assert all(len(row) == 4 and row == sorted(row) for row in scores)
    raw = interval_coverage(check_samples, check_truth, (0.8, 0.95))
    served = interval_coverage(
        conformal_map(check_samples, levels, scores), check_truth, (0.8, 0.95)
    )
    assert max(raw["0.95"]) < 0.7
    for level in ("0.8", "0.95"):
        assert np.allclose(served[level], float(level), atol=0.03), served
