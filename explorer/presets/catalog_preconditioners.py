"""Presets on today's preconditioners: which matrix Sophia's estimator and Shampoo's
factors estimate (claim PC), measured against the exact matrices.
"""

from __future__ import annotations

from explorer.presets import preconditioners
from explorer.presets.base import Catalog

CATALOG = Catalog(
    r"""
## Sophia's estimator is a diagonal Gauss-Newton, not the Hessian's diagonal
`pc_sophia_gnb` · PC

Sophia's Gauss-Newton-Bartlett estimator squares the gradient of the loss at targets
sampled from the model, and the check battery's fit over every exact matrix names
its average the GGN's diagonal, at scale one. The Hessian's diagonal, which a
"second-order clipped" optimizer suggests, is several times farther away, and what
remains of the residual falls like one over the square root of the number of draws.

$$
\begin{aligned}
\hat d &= B\,\hat g \odot \hat g,\quad \hat g = \nabla_\theta \frac1B \sum_n
L(\hat y_n, f(x_n;\theta)),\quad \hat y_n \sim p(y \mid f(x_n;\theta)) \\
\mathbb{E}[\hat d] &= \operatorname{diag}(F) = \operatorname{diag}(G)
\ne \operatorname{diag}(H), \qquad \text{nearest } R = \arg\min_R
\frac{\|\hat d - \alpha R\|_F}{\|\hat d\|_F}
\end{aligned}
$$

Reference: Liu et al. 2023 (Sophia), Algorithm 2; Martens 2020, §9

## Shampoo's factors against the exact GGN blocks
`pc_shampoo_factors` · PC

Shampoo keeps, per weight matrix, a left and a right factor built from gradient
outer products, and divided by the trace of the left one their Kronecker product is
an estimate of the exact GGN block at its scale. Against the best Kronecker
product any method could reach on that block, Shampoo² is within a few per cent on
every layer, while K-FAC's factors, which assume inputs and back-propagated signals
independent, fall well short on the first layer.

$$
\begin{aligned}
L &= \frac1N\sum_{n,k} G_{nk} G_{nk}^\top,\quad R = \frac1N\sum_{n,k} G_{nk}^\top
G_{nk},\quad C_l = \frac{L \otimes R}{\operatorname{tr} L} \\
\varepsilon^\star_l &= \min_{A,B}\frac{\|A\otimes B - G_l\|_F}{\|G_l\|_F} =
\frac{\sqrt{\sum_{i\ge2}\sigma_i^2(\tilde G_l)}}{\|G_l\|_F},\qquad
\text{efficiency} = \varepsilon^\star_l / \varepsilon_l
\end{aligned}
$$

Reference: Morwani et al. 2025 (Shampoo's preconditioner), §3; Van Loan & Pitsianis 1993
"""
)

CATALOG.add(
    "pc_sophia_gnb",
    preconditioners.SOPHIA_ESTIMATOR,
    problem="digits_mlp",
    problem_options={"hidden": (16,)},
    sizes={
        "small": {"problem_options": {"hidden": (8,)}, "draws": (1, 4, 16, 64)},
        "full": {"draws": (1, 4, 16, 64, 256)},
    },
    params={"seed": 3},
)
CATALOG.add(
    "pc_shampoo_factors",
    preconditioners.SHAMPOO_FACTORS,
    problem="digits_mlp",
    problem_options={"hidden": (16,)},
    sizes={"small": {"problem_options": {"hidden": (8,)}}, "full": {}},
)
