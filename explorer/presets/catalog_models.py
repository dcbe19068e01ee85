"""Presets on the newer model families: K-FAC's two forms on conv nets (C7) and the
network-loss split of the GGN on Poisson and heteroscedastic models (C1).
"""

from __future__ import annotations

from explorer.presets import models
from explorer.presets.base import Catalog

CATALOG = Catalog(
    r"""
## The GGN depends on where the network ends and the loss begins
`c1_network_loss_split` · C1

The Gauss-Newton matrix linearizes the network up to its outputs and keeps the exact
curvature of the loss beyond them, so cutting the same model at another place
changes it, while the Fisher stays the same. Cut at the likelihood's natural
parameter (a Poisson log-rate) the two agree; cut elsewhere (a softplus rate, or a
Gaussian's mean and log-variance) they differ, and the heteroscedastic Gaussian's
GGN even has negative eigenvalues, which the Fisher never has.

$$
\begin{aligned}
G &= \frac1N\sum_i J_i^\top \nabla_z^2 L(y_i, z_i)\, J_i \;=\; F \quad\text{when
z is the natural parameter } \eta \\
\nabla^2_{(\mu,\, s)} L &= \begin{pmatrix} v & rv \\ rv & \tfrac12 r^2 v
\end{pmatrix},\quad r = y - \mu,\; v = e^{-s},\quad \det = -\tfrac12 r^2 v^2 < 0
\end{aligned}
$$

Reference: Martens 2020, §9; Schraudolph 2002

## K-FAC-expand and K-FAC-reduce on conv nets
`c7_kfac_expand_reduce` · C7

A convolution applies one kernel at every pixel, so K-FAC must decide what to do
with these shared positions: expand treats each pixel as one more example, reduce
first averages the inputs and sums the back-propagated signals over the pixels of
an image. On deep linear conv nets each form is exactly the GGN's layer block in its
own setting (a loss term per pixel for expand, pooling before the loss for reduce)
and not in the other's, while on a real MNIST CNN both are approximations whose
per-layer errors differ.

$$
\begin{aligned}
G_l &= \frac1N\sum_{n,k}\mathrm{vec}\Big(\sum_r \delta_{nrk}\bar a_{nr}^\top\Big)
\mathrm{vec}\Big(\sum_r \delta_{nrk}\bar a_{nr}^\top\Big)^\top \approx A_l\otimes
S_l, \qquad \varepsilon_l = \frac{\|A_l\otimes S_l - G_l\|_F}{\|G_l\|_F} \\
\text{expand: } A_l &= \frac{1}{NR}\sum_{n,r}\bar a_{nr}\bar a_{nr}^\top,\quad
S_l = \frac1N\sum_{n,r,k}\delta_{nrk}\delta_{nrk}^\top \\
\text{reduce: } A_l &= \frac1N\sum_n \hat a_n\hat a_n^\top,\; \hat a_n =
\frac1R\sum_r \bar a_{nr},\quad S_l = \frac1N\sum_{n,k}\Big(\sum_r
\delta_{nrk}\Big)\Big(\sum_r\delta_{nrk}\Big)^\top
\end{aligned}
$$

Reference: Eschenhagen et al. 2023 (NeurIPS), §3; Grosse & Martens 2016
"""
)


def _counts(samples: int, visits: int | None) -> dict:
    """The Poisson problems of the split preset, per link: the two-weight toy and
    the real doctor-visit counts (``visits``: a subset of that many person-years,
    None for all of them).
    """
    subset = {} if visits is None else {"num_samples": visits}
    return {
        f"{link} link ({key})": (key, {**options, "link": link})
        for key, options in (
            ("poisson_2d", {"num_samples": samples}),
            ("doctor_visits", subset),
        )
        for link in ("log", "softplus")
    }


CATALOG.add(
    "c1_network_loss_split",
    models.NETWORK_LOSS_SPLIT,
    problem="heteroscedastic_1d",
    sizes={
        "small": {
            "problem_options": {"num_samples": 40, "hidden": 4},
            "counts": _counts(60, visits=300),
        },
        "full": {"counts": _counts(500, visits=4000)},
    },
    params={"grid": (-3.0, 3.0, 61), "counts_shown": (0, 1, 3)},
)
CATALOG.add(
    "c7_kfac_expand_reduce",
    models.KFAC_EXPAND_REDUCE,
    problem="mnist_cnn",
    problem_options={"image_size": 14, "channels": (4, 8), "train_size": 256},
    sizes={
        "small": {
            "problem_options": {"image_size": 7, "channels": (2, 3), "train_size": 24},
            "linear_channels": 3,
            "linear_images": 16,
        },
        "full": {"linear_channels": 4, "linear_images": 32},
    },
    params={"damping": 0.1},
)
