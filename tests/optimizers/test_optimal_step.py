"""The optimal step along a direction: a vanishing direction is no step, never a
false "not positive definite" (issue 12: K-FAC with λ > 0 on stream_logreg)."""

import math

import explorer as ex


def test_a_vanishing_direction_is_a_zero_step_not_an_indefinite_curvature():
    config = ex.RunConfig(
        "stream_logreg", rule="kfac", steps=30, batch_size=1, curvature_batch_size=128
    )
    history = ex.run(config)
    # Before: "kfac + λI with λ = 0.0774 is not positive definite (its smallest
    # eigenvalue is 0)" at step 18, where a saturated batch gave a zero gradient.
    assert history.status != "indefinite", history.message
    alphas = history.metrics["alpha"]
    assert 0.0 in alphas  # the step where the direction vanished took no step
    assert all(math.isfinite(a) for a in alphas[1:])
    assert len(history) == 31
