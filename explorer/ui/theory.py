r"""The Theory page's text: THEORY.md's definitions rendered with formulas.

Plain data (title, anchor, Markdown with KaTeX), so that every selector's help text can
link to ``/theory#<anchor>`` and tests can check the anchors exist.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """One section: its heading, URL anchor and Markdown body."""

    title: str
    anchor: str
    body: str


SECTIONS: tuple[Section, ...] = (
    Section(
        "Setting and the 1/N convention",
        "setting",
        r"""
Data $(x_i, y_i)$, $i = 1..N$; network outputs $z_i = f(x_i;\theta) \in \mathbb{R}^C$ with
parameters $\theta \in \mathbb{R}^P$, flattened in the order of `model.parameters()`.
The output parameterizes a predictive distribution $R(y \mid z)$ and the loss is its
negative log-likelihood $L(y, z) = -\log r(y \mid z)$ (up to a constant). The objective is
the **mean**

$$h(\theta) = \frac{1}{N}\sum_{i=1}^N L\big(y_i, f(x_i;\theta)\big),$$

and **every curvature matrix is the curvature of this mean**, so it carries the same
$1/N$. $J_i = \partial z_i / \partial \theta$ is the $C \times P$ Jacobian and
$g = \nabla h = \frac1N \sum_i J_i^\top \nabla_z L(y_i, z_i)$.

Every loss is an exact NLL with its scale stated. A Gaussian with variance $\sigma^2$ has
$L = \|y - z\|^2 / (2\sigma^2)$; PyTorch's `MSELoss(reduction="mean")` equals that only
for $\sigma^2 = C/2$, and using the wrong variance silently breaks $F = G$.
""",
    ),
    Section(
        "Likelihoods and their output curvature",
        "likelihoods",
        r"""
| likelihood | loss in $z$ | $\nabla_z^2 L$ (output Hessian) | output Fisher $F_R(z)$ |
|---|---|---|---|
| Gaussian, fixed $\sigma$ | $\|y-z\|^2/(2\sigma^2)$ | $I/\sigma^2$ | $I/\sigma^2$ |
| Bernoulli (logits) | binary cross-entropy | $\mathrm{diag}(p(1-p))$ | same |
| Categorical (logits) | softmax cross-entropy | $\mathrm{diag}(p) - pp^\top$ | same |
| Gaussian, mean $\tanh z$ | $\|y - \tanh z\|^2/(2\sigma^2)$ | $(1-t^2)[(1-t^2) + 2t(y-t)]/\sigma^2$, can be $<0$ | $(1-t^2)^2/\sigma^2$ |
| Gaussian, $z = (\mu, \sigma)$ | $(y-\mu)^2/(2\sigma^2) + \log\sigma$ | depends on $y$, indefinite | $\mathrm{diag}(1/\sigma^2, 2/\sigma^2)$ |

For the first three the output is the natural parameter of an exponential family
(*matching*), so the output Hessian equals the output Fisher. The last two are
*non-matching*: there the Fisher and the Gauss-Newton matrix differ.
""",
    ),
    Section(
        "Hessian",
        "hessian",
        r"""
$$H = \nabla^2 h(\theta) = G + \frac1N \sum_i \sum_c [\nabla_z L(y_i,z_i)]_c\, \nabla^2_\theta z_{i,c}.$$

Exact second derivatives. Away from a minimum it can be **indefinite**: then
$H + \lambda I$ may have no positive-definite solve, and a Newton step can point uphill.
Damped Newton then raises $\lambda$ past the most negative eigenvalue,
$\lambda' = \max(\lambda/\omega,\ -\lambda_{\min}(H) + 0.1\,|\lambda_{\min}(H)|)$, and retries
(the `newton` rule's default, recorded per step in the history's `indefinite` column);
`on_indefinite="negative_curvature"` instead steps along the eigenvector $v$ of
$\lambda_{\min} < 0$, $\delta = -\alpha\,(g^\top v / |\lambda_{\min}|)\, v$ (saddle-free
Newton on that direction), and `"stop"` stops with the remedy (more damping, or a PSD
curvature).
""",
    ),
    Section(
        "Generalized Gauss-Newton (GGN)",
        "ggn",
        r"""
$$G = \frac1N \sum_i J_i^\top\, \nabla_z^2 L(y_i, z_i)\, J_i.$$

The Hessian without the residual term (Schraudolph 2002): positive semi-definite
whenever $L$ is convex in $z$, and equal to the Hessian for linear least squares and at
an interpolating solution. Products cost about one gradient: a forward-mode pass for
$J v$ and a reverse pass for $J^\top u$.
""",
    ),
    Section(
        "Fisher information",
        "fisher",
        r"""
$$F = \frac1N \sum_i J_i^\top F_R(z_i) J_i, \qquad F_R(z) = \mathbb{E}_{y\sim R(\cdot\mid z)}\big[\nabla_z L(y,z)\nabla_z L(y,z)^\top\big].$$

The expectation is over the **model's own** predictive distribution, not the labels.
For matching likelihoods $F_R = \nabla_z^2 L$, hence $F = G$ (claim C1), which is why
natural gradient and Gauss-Newton runs coincide for cross-entropy. *Natural gradient
descent* preconditions with $F$.

**Monte Carlo Fisher** replaces $F_R$ by $\frac1k\sum_s u_s u_s^\top$ with
$u_s = \nabla_z L(\hat y_s, z)$, $\hat y_s \sim R(\cdot \mid z)$: unbiased, error shrinking
like $1/\sqrt{k}$.
""",
    ),
    Section(
        "Empirical Fisher",
        "ef",
        r"""
$$\tilde F = \frac1N \sum_i \nabla_\theta L_i\, \nabla_\theta L_i^\top \quad\text{with the training labels } y_i.$$

Not the Fisher: it uses the labels instead of samples from the model, and it is not a
curvature of $h$ at all away from a well-specified optimum. Kunstner, Balles & Hennig
(2019) show its preconditioned directions can be badly distorted even for linear
regression (claim C3).
""",
    ),
    Section(
        "Diagonal, block-diagonal and K-FAC",
        "kfac",
        r"""
The **diagonal** or the **per-layer blocks** of any matrix above are cheap
approximations with closed-form inverses.

**K-FAC** (Martens & Grosse 2015): for a linear layer $s = \bar W \bar a$ with
$\bar a = [a; 1]$, the Fisher block is approximated by a Kronecker product

$$F_\ell \approx A_\ell \otimes S_\ell,\quad A = \mathbb{E}[\bar a \bar a^\top],\quad S = \mathbb{E}[\nabla_s L\, \nabla_s L^\top],$$

with $y$ sampled from the model (or the exact output factor, "KFLR"), block-diagonal
across layers. It is exact for a single linear layer with a Gaussian output (claim C7).
Damping is factored: $(A + \pi\sqrt{\lambda} I)^{-1} \otimes (S + \sqrt{\lambda}/\pi\, I)^{-1}$
with $\pi^2 = (\operatorname{tr} A/\dim A)/(\operatorname{tr} S/\dim S)$.
""",
    ),
    Section(
        "Update rules, damping and step sizes",
        "updates",
        r"""
- **SGD**: $\theta \leftarrow \theta - \alpha g$ (optional momentum); **Adam** as the
  baseline users know.
- **Damped curvature step** with $C \in \{F, G, H, \tilde F, \hat F, \text{K-FAC}, \ldots\}$:
  $\delta = -(C + \lambda I)^{-1} g$, $\theta \leftarrow \theta + \alpha\delta$. Natural
  gradient means $C = F$, Gauss-Newton $C = G$, Newton $C = H$.
- **Step size** fixed, or from the quadratic model
  $M(\delta) = h + g^\top\delta + \tfrac12 \delta^\top (C+\lambda I)\delta$:
  $\alpha^* = -g^\top\delta / \delta^\top (C + \lambda I) \delta$.
- **Levenberg–Marquardt damping**: $\rho = \dfrac{h(\theta+\delta) - h(\theta)}{M(\delta) - M(0)}$;
  if $\rho > 3/4$ then $\lambda \leftarrow \omega\lambda$, if $\rho < 1/4$ then
  $\lambda \leftarrow \lambda/\omega$ ($\omega \approx 2/3$).
- **Iterate averaging** (Polyak): report $h$ at the running average $\bar\theta_k$.
- **Hessian-free**: truncated, warm-started conjugate gradients on GGN products
  (Martens 2010).
""",
    ),
    Section(
        "Today's preconditioners and the matrices they imply",
        "preconditioners",
        r"""
Optimizers people train with estimate a curvature without naming it; each has an
implied matrix the explorer holds against the exact ones (the check battery names
the **nearest reference** $R$ and the scale $\alpha$ of $C \approx \alpha R$).

- **Shampoo** (Gupta et al. 2018): per weight matrix $G$,
  $L \mathrel{+}= GG^\top$, $R \mathrel{+}= G^\top G$, direction $L^{-1/4} G R^{-1/4}$,
  i.e. $(L \otimes R)^{-1/4}\,\mathrm{vec}\,G$. The curvature `shampoo` is
  $C = (L \otimes R)/\operatorname{tr} L$ from per-example gradients ("Shampoo²",
  Morwani et al. 2025): it has each exact block's trace and is within a few per cent of
  the best Kronecker product of that block.
- **SOAP** (Vyas et al. 2024): Adam run in the eigenbasis $Q_L, Q_R$ of Shampoo's
  factors.
- **EKFAC** (George et al. 2018): K-FAC's eigenbasis $Q_S \otimes Q_A$ with the exact
  second moments $\mathrm{diag}(Q^\top F_\ell Q)$ as eigenvalues: never farther from
  the Fisher block than K-FAC.
- **FOOF** (Benzing 2022): K-FAC with $S = I$, the step $G(A + \lambda I)^{-1}$; its
  scale is $\operatorname{tr} C = d_{\text{out}} \operatorname{tr} A$, not the Fisher's.
- **Sophia** (Liu et al. 2023): $\hat d = B\,\hat g \odot \hat g$ at targets sampled from
  the model has $\mathbb{E}[\hat d] = \operatorname{diag} F$ (the score has mean zero), a
  Gauss-Newton diagonal, not the Hessian's; the step clips
  $m / \max(\gamma h, \epsilon)$ to $[-1, 1]$.
- **AdaHessian** (Yao et al. 2021): Hutchinson's
  $\mathbb{E}[z \odot Hz] = \operatorname{diag} H$, averaged over each convolution
  kernel's spatial block; indefinite like $H$.
- **Muon** (Jordan et al. 2024): momentum $M$ orthogonalized,
  $O = (MM^\top)^{-1/2} M$ (Newton–Schulz): Shampoo's left factor on the momentum's own
  Gram matrix with $R = I$, not a curvature in the Fisher/GGN sense.

Sampled estimators are judged as estimators: the mean of $k$ draws must approach $R$
like $k^{-1/2}$.
""",
    ),
    Section(
        "Spectra and landscapes",
        "spectra",
        r"""
Eigenvalues are exact (a symmetric eigensolver) for small $P$, top-$k$ by Lanczos on
matrix-vector products for large $P$; the spectral density comes from stochastic
Lanczos quadrature and the trace from Hutchinson's estimator. The generalized spectrum
of $(C + \lambda I)^{-1} H$ shows how well $C$ preconditions $H$. Approximation quality
of $C$ against a reference $R$: relative Frobenius error, the cosine between
$C^{-1}g$ and $R^{-1}g$, top-eigenvector overlap, trace and condition number.
For 2-parameter problems the exact loss contours carry every optimizer's path and the
field $-(C + \lambda I)^{-1} g$; for larger $P$, the plane of the first two principal
directions of all trajectories (Li et al. 2018).
""",
    ),
    Section(
        "Claims you can reproduce",
        "claims",
        r"""
- **C1** $F = G$ for Gaussian, Bernoulli and categorical losses on natural parameters; a
  non-matching loss shows $F \ne G$.
- **C2** $H = G$ + residual; $G$ is PSD where $H$ has negative eigenvalues; $H \approx G$
  near an interpolating solution.
- **C3** The empirical Fisher is not the Fisher; the MC Fisher converges to $F$.
- **C4** Natural gradient is invariant to affine reparameterization exactly, to smooth
  ones in the small-step limit; gradient descent is not; damping breaks exactness.
- **C5** Damping makes large steps safe; Levenberg–Marquardt adapts it.
- **C6** With iterate averaging, constant-step SGD reaches the Fisher-efficient rate
  $P/(2k)$ like natural gradient; second-order methods win on small budgets.
- **C7** K-FAC approximates $F$: exact for one linear layer with Gaussian output.

References: Amari 1998; Schraudolph 2002; Martens 2010; Martens & Grosse 2015; Li et al.
2018; Kunstner, Balles & Hennig 2019; Ghorbani, Krishnan & Xiao 2019; Martens 2020.
""",
    ),
)

ANCHORS = frozenset(section.anchor for section in SECTIONS)


def theory_link(anchor: str, text: str = "definition") -> str:
    """A Markdown link to a Theory section, for help texts."""
    if anchor not in ANCHORS:
        raise ValueError(
            f"unknown theory anchor {anchor!r}; valid: {', '.join(sorted(ANCHORS))}"
        )
    return f"[{text}](/theory#{anchor})"
