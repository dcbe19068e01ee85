"""Option schemas of the update rules (one declaration drives validation, CLI and UI)."""

from __future__ import annotations

from explorer.optimizers.damping import ADAPTATIONS, ON_INDEFINITE
from explorer.optimizers.preconditioning import NEGATIVE_CURVATURE, SOLVERS
from explorer.options import Option


def lr_option(default: float, high: float = 1e3) -> Option:
    """The learning rate α > 0 (log-scaled in the UI)."""
    return Option(
        "lr",
        default,
        "Learning rate α: the step is δ = −α·(direction).",
        low=0.0,
        high=high,
        low_exclusive=True,
        log=True,
    )


def eps_option(default: float, text: str, name: str = "eps") -> Option:
    """A small positive ε in (0, 1] (log-scaled in the UI)."""
    return Option(name, default, text, low=0.0, high=1.0, low_exclusive=True, log=True)


def _lr(default: float, high: float = 1e3) -> tuple:
    return (lr_option(default, high),)


def _momentum_option():
    return Option(
        "momentum",
        0.0,
        "Heavy-ball momentum μ: v ← μv + u (0 turns it off).",
        low=0.0,
        high=0.999,
    )


def sgd_options() -> tuple:
    return (
        *_lr(0.1),
        _momentum_option(),
        Option(
            "nesterov",
            False,
            "Nesterov momentum: step along u + μv instead of v.",
        ),
    )


def adam_options() -> tuple:
    return (
        *_lr(0.01),
        Option(
            "beta1", 0.9, "Decay β₁ of the first-moment average.", low=0.0, high=0.999
        ),
        Option(
            "beta2",
            0.999,
            "Decay β₂ of the second-moment average.",
            low=0.0,
            high=0.99999,
        ),
        Option(
            "eps",
            1e-8,
            "ε added to √v̂ in the denominator.",
            low=0.0,
            high=1.0,
            low_exclusive=True,
            log=True,
        ),
    )


def curvature_step_options() -> tuple:
    """The options every damped curvature step shares (THEORY.md §3)."""
    return (
        # large λ with lr = λ·η is SGD with step η, so lr may be large too
        *_lr(1.0, high=1e8),
        Option(
            "step_size",
            "fixed",
            "'fixed': α = lr; 'optimal': α* = gᵀp / pᵀ(C + λI)p, the minimizer of the "
            "quadratic model along the direction p.",
            choices=("fixed", "optimal"),
        ),
        Option(
            "damping",
            0.1,
            "Tikhonov damping λ in (C + λI)⁻¹g; the starting λ under LM adaptation.",
            low=0.0,
            high=1e8,
            log=True,
        ),
        Option(
            "damping_adaptation",
            "lm",
            "'fixed' λ, or 'lm': Levenberg–Marquardt from the reduction ratio ρ "
            "(λ ← ωλ if ρ > 3/4, λ/ω if ρ < 1/4).",
            choices=ADAPTATIONS,
        ),
        Option(
            "lm_omega",
            None,
            "ω in the LM rule; default 2/3, or (19/20)^T when adapting every T steps.",
            low=0.0,
            high=0.999,
            low_exclusive=True,
            kind="float",
            nullable=True,
        ),
        Option(
            "lm_interval",
            1,
            "Adapt λ every T steps (ρ is recorded every step).",
            low=1,
            high=1000,
        ),
        Option(
            "min_damping",
            1e-8,
            "The smallest λ LM adaptation may reach.",
            low=0.0,
            high=1e3,
            log=True,
        ),
        Option(
            "on_indefinite",
            "stop",
            "When C + λI is not positive definite: 'stop' the run (status "
            "'indefinite'), 'raise_damping' past the most negative eigenvalue and "
            "retry (damped Newton), or step along the 'negative_curvature' "
            "eigenvector (saddle-free Newton on it).",
            choices=ON_INDEFINITE,
        ),
        Option(
            "lm_reject",
            True,
            "Under LM, do not take a step that increases the loss on the batch.",
        ),
        Option(
            "track_rho",
            False,
            "Record ρ under fixed damping too (one more loss evaluation per step).",
        ),
        _momentum_option(),
        Option(
            "refresh_every",
            1,
            "Rebuild the curvature every k steps and reuse it in between.",
            low=1,
            high=100_000,
        ),
        Option(
            "ema",
            0.0,
            "Moving-average decay β of the curvature across refreshes (K-FAC style; "
            "0 keeps only the latest).",
            low=0.0,
            high=0.999,
        ),
        Option(
            "solver",
            "auto",
            "'direct' (closed forms, dense Cholesky), 'cg' (conjugate gradients on "
            "products) or 'auto' (direct when cheap, else CG).",
            choices=SOLVERS,
        ),
        Option(
            "cg_maxiter",
            20,
            "At most this many CG iterations (curvature products) per step.",
            low=1,
            high=10_000,
        ),
        Option(
            "cg_rtol",
            1e-6,
            "CG stops when the residual is below rtol times ‖g‖.",
            low=0.0,
            high=1.0,
            low_exclusive=True,
            log=True,
        ),
        Option(
            "cg_warm_start",
            0.0,
            "Start CG from this multiple of the previous solution (0.95 in Martens "
            "2010); 0 starts from zero.",
            low=0.0,
            high=1.0,
        ),
        Option(
            "dense_max_params",
            1000,
            "Under solver='auto', factorize the dense matrix up to this P; above it "
            "use CG (closed-form curvatures always solve directly).",
            low=1,
            high=6000,
        ),
        Option(
            "negative_curvature",
            "error",
            "When CG meets negative curvature: 'error' stops with status "
            "'indefinite'; 'truncate' keeps the iterate so far (truncated Newton).",
            choices=NEGATIVE_CURVATURE,
        ),
    )
