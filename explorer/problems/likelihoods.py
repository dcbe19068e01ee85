r"""Likelihoods: exact negative log-likelihoods with closed-form output curvature.

A :class:`LossSpec` turns network outputs ``z`` (N, C) into a predictive distribution
:math:`R(y \mid z)`. Its loss is :math:`L(y, z) = -\log r(y \mid z)` up to an additive
constant, with the scale stated (THEORY.md §1). Each likelihood gives, per example:

* ``output_grad``: :math:`\nabla_z L` (N, C)
* ``output_hessian``: :math:`\nabla^2_z L` (N, C, C), which may depend on ``y``
* ``output_fisher``: :math:`F_R(z) = E_{y \sim R}[\nabla_z L \nabla_z L^\top]` (N, C, C)
* ``sample``: ``y ~ R(y | z)`` with an explicit ``torch.Generator``

For *matching* likelihoods (the output is the natural parameter) the output Hessian
equals the output Fisher, hence GGN = Fisher (claim C1). The non-matching ones
(``gaussian_tanh_mean``, ``gaussian_mean_scale``, ``gaussian_heteroscedastic``, Poisson
with a softplus link) are where the two differ.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ScaledLoss(nn.Module):
    """A ``torch.nn`` loss times a constant, so it equals our per-example-mean NLL.

    ``base`` is the standard PyTorch module (what curvlinops or BackPACK recognise)
    and ``scale`` the factor between its reduction and ours.
    """

    def __init__(self, base: nn.Module, scale: float) -> None:
        super().__init__()
        self.base = base
        self.scale = float(scale)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.scale * self.base(outputs, targets)


class LikelihoodLoss(nn.Module):
    """A ``torch.nn.Module`` computing a likelihood's mean NLL when PyTorch has none."""

    def __init__(self, spec: LossSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.spec.value(outputs, targets)


def _randn(
    shape: torch.Size, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Standard normals drawn on the generator's device, returned on ``like``'s.

    Drawing on the generator's device (CPU by default) gives the same samples on CPU
    and GPU for the same seed.
    """
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    draw = torch.randn(shape, generator=generator, device=generator.device)
    return draw.to(device=like.device, dtype=like.dtype)


def _rand(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.rand(shape, dtype=like.dtype, device=like.device)
    draw = torch.rand(shape, generator=generator, device=generator.device)
    return draw.to(device=like.device, dtype=like.dtype)


def symmetric_sqrt_factor(matrices: Tensor) -> tuple[Tensor, Tensor]:
    """Factors symmetric ``M`` (..., C, C) as ``Q diag(w) Q^T``.

    Returns:
        ``(Q, w)`` with ``Q`` (..., C, C) scaled eigenvectors ``V |λ|^{1/2}`` and signs
        ``w`` (..., C) in {-1, 0, 1}, so that ``M = Q diag(w) Q^T`` even when ``M`` is
        indefinite.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(matrices)
    factor = eigenvectors * eigenvalues.abs().sqrt().unsqueeze(-2)
    return factor, torch.sign(eigenvalues)


class LossSpec(ABC):
    """An exact negative log-likelihood of a distribution over targets.

    Attributes:
        key: Registry-style name.
        label: Human-readable name.
        matching: Whether the outputs are the natural parameters of ``R`` (then the
            output Hessian equals the output Fisher and GGN = Fisher).
        classification: Whether targets are class labels (accuracy is defined).
        convex: Whether L is convex in z for every target, so the output Hessian and
            hence the GGN are PSD (Schraudolph 2002).
    """

    key: str = ""
    label: str = ""
    matching: bool = True
    classification: bool = False
    convex: bool = True

    def __init__(self, num_outputs: int) -> None:
        if num_outputs < 1:
            raise ValueError(f"num_outputs = {num_outputs} must be at least 1")
        self.num_outputs = int(num_outputs)

    # ------------------------------------------------------------------ values
    @abstractmethod
    def per_example(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The NLL of each example (N,), constants dropped."""

    def value(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The mean NLL over examples, the 1/N convention of THEORY.md (scalar)."""
        return self.per_example(outputs, targets).mean()

    @abstractmethod
    def output_grad(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """∇_z L per example (N, C)."""

    @abstractmethod
    def output_hessian(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """∇²_z L per example (N, C, C); may depend on the targets."""

    @abstractmethod
    def output_fisher(self, outputs: Tensor) -> Tensor:
        """E_{y~R(z)}[∇_z L ∇_z Lᵀ] per example (N, C, C); never needs targets."""

    @abstractmethod
    def sample(self, outputs: Tensor, generator: torch.Generator | None) -> Tensor:
        """Targets drawn from R(y | z), shaped like the training targets."""

    @abstractmethod
    def kl(self, outputs_p: Tensor, outputs_q: Tensor) -> Tensor:
        """KL(R(z_p) ‖ R(z_q)) per example (N,)."""

    @abstractmethod
    def torch_loss(self) -> nn.Module:
        """A plain ``torch.nn`` loss (PyTorch's own where one exists: what
        curvlinops and BackPACK accept) with :meth:`value` =
        :attr:`loss_scale` × ``torch_loss()(outputs, targets)``.
        """

    @property
    def loss_scale(self) -> float:
        """The factor between :meth:`torch_loss` and :meth:`value` (PyTorch's mean
        runs over N·C entries, ours over N; MSELoss has no 1/(2σ²)).
        """
        return 1.0

    def scaled_torch_loss(self) -> nn.Module:
        """A module equal to :meth:`value`: :meth:`torch_loss` times
        :attr:`loss_scale`.
        """
        scale = self.loss_scale
        module = self.torch_loss()
        return module if scale == 1.0 else ScaledLoss(module, scale)

    @abstractmethod
    def describe(self) -> str:
        """The formula with its scale stated, for help texts."""

    # ------------------------------------------------- products (overridable)
    def output_hessian_vp(self, outputs: Tensor, targets: Tensor, u: Tensor) -> Tensor:
        """∇²_z L · u for ``u`` (..., N, C); closed forms override this."""
        return torch.einsum(
            "nij,...nj->...ni", self.output_hessian(outputs, targets), u
        )

    def output_fisher_vp(self, outputs: Tensor, u: Tensor) -> Tensor:
        """F_R(z) · u for ``u`` (..., N, C); closed forms override this."""
        return torch.einsum("nij,...nj->...ni", self.output_fisher(outputs), u)

    def output_hessian_product(self, outputs: Tensor, targets: Tensor):
        """``u -> ∇²_z L · u`` with per-example statistics computed once.

        Curvature operators call this at construction and reuse the closure for
        every product (inside CG or Lanczos, softmax and friends are not redone).
        """
        return lambda u: self.output_hessian_vp(outputs, targets, u)

    def output_fisher_product(self, outputs: Tensor):
        """``u -> F_R(z) · u`` with per-example statistics computed once."""
        return lambda u: self.output_fisher_vp(outputs, u)

    def output_fisher_sqrt(self, outputs: Tensor) -> Tensor:
        """``R`` (N, C, K) with F_R(z) = R Rᵀ (used by diagonals and K-FAC)."""
        factor, _ = symmetric_sqrt_factor(self.output_fisher(outputs))
        return factor

    def output_factors(
        self,
        outputs: Tensor,
        mode: str,
        targets: Tensor | None = None,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Columns r (N, C, K) whose outer products average to an output matrix:
        ``"exact"``: F_R(z)'s square root (Σ_k r rᵀ = F_R); ``"empirical"``: the
        gradient at the labels (K = 1); ``"mc"``: the gradients at ``samples``
        targets drawn from the model, each scaled by 1/√samples (unbiased for F_R).
        K-FAC, EKFAC and Shampoo back-propagate them.
        """
        if mode == "exact":
            return self.output_fisher_sqrt(outputs)
        if mode == "empirical":
            if targets is None:
                raise ValueError("mode 'empirical' needs the targets")
            return self.output_grad(outputs, targets).unsqueeze(-1)
        if mode != "mc":
            raise ValueError(f"output factor mode {mode!r}: exact, empirical or mc")
        grads = [
            self.output_grad(outputs, self.sample(outputs, generator))
            for _ in range(samples)
        ]
        return torch.stack(grads, -1) / samples**0.5

    def accuracy(self, outputs: Tensor, targets: Tensor) -> Tensor | None:
        """Fraction of correct predictions, or ``None`` where it is not defined."""
        return None

    def mean(self, outputs: Tensor) -> Tensor:
        """The predictive mean E[y | z] (N, C), for plotting fitted curves."""
        return outputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class GaussianLoss(LossSpec):
    r"""Gaussian with fixed variance σ²: :math:`L = \|y - z\|^2 / (2σ^2)`.

    Matching: the mean is the natural parameter (up to the fixed 1/σ²), so the
    output Hessian and Fisher are both I/σ².

    >>> loss = GaussianLoss(1, sigma=2.0)
    >>> float(loss.value(torch.zeros(1, 1), torch.full((1, 1), 4.0)))
    2.0
    """

    key = "gaussian"
    label = "Gaussian (fixed σ)"
    matching = True

    def __init__(self, num_outputs: int, sigma: float = 1.0) -> None:
        super().__init__(num_outputs)
        if not sigma > 0:
            raise ValueError(f"sigma = {sigma!r} must be positive")
        self.sigma = float(sigma)
        self.precision = 1.0 / self.sigma**2

    def per_example(self, outputs, targets):
        return 0.5 * self.precision * (targets - outputs).pow(2).sum(-1)

    def output_grad(self, outputs, targets):
        return self.precision * (outputs - targets)

    def output_hessian(self, outputs, targets):
        return self.output_fisher(outputs)

    def output_fisher(self, outputs):
        eye = torch.eye(self.num_outputs, dtype=outputs.dtype, device=outputs.device)
        return (self.precision * eye).expand(outputs.shape[0], -1, -1)

    def output_hessian_vp(self, outputs, targets, u):
        return self.precision * u

    def output_fisher_vp(self, outputs, u):
        return self.precision * u

    def output_fisher_sqrt(self, outputs):
        return self.output_fisher(outputs).sqrt()

    def sample(self, outputs, generator):
        return outputs + self.sigma * _randn(outputs.shape, outputs, generator)

    def kl(self, outputs_p, outputs_q):
        return 0.5 * self.precision * (outputs_p - outputs_q).pow(2).sum(-1)

    def torch_loss(self):
        return nn.MSELoss()

    @property
    def loss_scale(self):
        # MSELoss(mean) = (1/(N C)) Σ ||y - z||²  =  (2σ²/C) · ours.
        return self.num_outputs / (2 * self.sigma**2)

    def describe(self):
        return f"‖y − z‖² / (2σ²) with σ = {self.sigma:g}"


class BernoulliLoss(LossSpec):
    """Independent Bernoulli outputs with logits ``z``: binary cross-entropy.

    ``L = Σ_c softplus(z_c) − y_c z_c``; output Hessian = Fisher = diag(p(1 − p)),
    p = sigmoid(z). Targets are in {0, 1}.
    """

    key = "bernoulli"
    label = "Bernoulli (logits)"
    matching = True

    @property
    def classification(self) -> bool:  # single-logit binary classification
        return self.num_outputs == 1

    def per_example(self, outputs, targets):
        bce = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
        return bce.sum(-1)

    def output_grad(self, outputs, targets):
        return torch.sigmoid(outputs) - targets

    def _variance(self, outputs):
        p = torch.sigmoid(outputs)
        return p * (1 - p)

    def output_hessian(self, outputs, targets):
        return self.output_fisher(outputs)

    def output_fisher(self, outputs):
        return torch.diag_embed(self._variance(outputs))

    def output_hessian_vp(self, outputs, targets, u):
        return self._variance(outputs) * u

    def output_fisher_vp(self, outputs, u):
        return self._variance(outputs) * u

    def output_fisher_sqrt(self, outputs):
        return torch.diag_embed(self._variance(outputs).sqrt())

    def output_hessian_product(self, outputs, targets):
        return self.output_fisher_product(outputs)

    def output_fisher_product(self, outputs):
        variance = self._variance(outputs)
        return lambda u: variance * u

    def sample(self, outputs, generator):
        return (_rand(outputs.shape, outputs, generator) < torch.sigmoid(outputs)).to(
            outputs.dtype
        )

    def kl(self, outputs_p, outputs_q):
        p = torch.sigmoid(outputs_p)
        log_p, log_1mp = F.logsigmoid(outputs_p), F.logsigmoid(-outputs_p)
        log_q, log_1mq = F.logsigmoid(outputs_q), F.logsigmoid(-outputs_q)
        return (p * (log_p - log_q) + (1 - p) * (log_1mp - log_1mq)).sum(-1)

    def torch_loss(self):
        return nn.BCEWithLogitsLoss()

    @property
    def loss_scale(self):
        # BCEWithLogitsLoss(mean) averages over N·C entries; ours sums over C.
        return float(self.num_outputs)

    def accuracy(self, outputs, targets):
        if self.num_outputs != 1:
            return None
        return ((outputs > 0).to(targets.dtype) == targets).to(outputs.dtype).mean()

    def mean(self, outputs):
        return torch.sigmoid(outputs)

    def describe(self):
        return "Σ_c BCE-with-logits(z_c, y_c), summed over outputs, mean over examples"


class CategoricalLoss(LossSpec):
    """Softmax cross-entropy on logits ``z``; targets are class indices (N,).

    Output Hessian = Fisher = diag(p) − p pᵀ with p = softmax(z).
    """

    key = "categorical"
    label = "Categorical (softmax logits)"
    matching = True
    classification = True

    def per_example(self, outputs, targets):
        return F.cross_entropy(outputs, targets, reduction="none")

    def output_grad(self, outputs, targets):
        p = torch.softmax(outputs, -1)
        return p - F.one_hot(targets, self.num_outputs).to(p.dtype)

    def output_hessian(self, outputs, targets):
        return self.output_fisher(outputs)

    def output_fisher(self, outputs):
        p = torch.softmax(outputs, -1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)

    def _fisher_vp(self, outputs, u):
        p = torch.softmax(outputs, -1)
        return p * u - p * (p * u).sum(-1, keepdim=True)

    def output_hessian_vp(self, outputs, targets, u):
        return self._fisher_vp(outputs, u)

    def output_fisher_vp(self, outputs, u):
        return self._fisher_vp(outputs, u)

    def output_hessian_product(self, outputs, targets):
        return self.output_fisher_product(outputs)

    def output_fisher_product(self, outputs):
        p = torch.softmax(outputs, -1)
        return lambda u: p * u - p * (p * u).sum(-1, keepdim=True)

    def output_fisher_sqrt(self, outputs):
        # diag(p) − p pᵀ = (diag(√p) − p √pᵀ)(diag(√p) − p √pᵀ)ᵀ since Σ p = 1.
        p = torch.softmax(outputs, -1)
        root = p.sqrt()
        return torch.diag_embed(root) - p.unsqueeze(-1) * root.unsqueeze(-2)

    def sample(self, outputs, generator):
        p = torch.softmax(outputs, -1)
        if generator is None:
            return torch.multinomial(p, 1).squeeze(-1)
        draw = torch.multinomial(
            p.detach().to(device=generator.device, dtype=torch.float64),
            1,
            generator=generator,
        )
        return draw.squeeze(-1).to(outputs.device)

    def kl(self, outputs_p, outputs_q):
        log_p = torch.log_softmax(outputs_p, -1)
        log_q = torch.log_softmax(outputs_q, -1)
        return (log_p.exp() * (log_p - log_q)).sum(-1)

    def torch_loss(self):
        return nn.CrossEntropyLoss()

    def accuracy(self, outputs, targets):
        return (outputs.argmax(-1) == targets).to(outputs.dtype).mean()

    def mean(self, outputs):
        return torch.softmax(outputs, -1)

    def describe(self):
        return "softmax cross-entropy −log softmax(z)_y, mean over examples"


class DiagonalLoss(LossSpec):
    """A likelihood whose outputs are independent given z: its output Hessian and
    Fisher are diagonal, given by :meth:`_hessian_diag` and :meth:`_fisher_diag`
    (N, C), and every product is elementwise.
    """

    @abstractmethod
    def _hessian_diag(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The diagonal of ∇²_z L per example (N, C)."""

    @abstractmethod
    def _fisher_diag(self, outputs: Tensor) -> Tensor:
        """The diagonal of F_R(z) per example (N, C)."""

    def output_hessian(self, outputs, targets):
        return torch.diag_embed(self._hessian_diag(outputs, targets))

    def output_fisher(self, outputs):
        return torch.diag_embed(self._fisher_diag(outputs))

    def output_hessian_vp(self, outputs, targets, u):
        return self._hessian_diag(outputs, targets) * u

    def output_fisher_vp(self, outputs, u):
        return self._fisher_diag(outputs) * u

    def output_fisher_sqrt(self, outputs):
        return torch.diag_embed(self._fisher_diag(outputs).sqrt())

    def output_hessian_product(self, outputs, targets):
        diagonal = self._hessian_diag(outputs, targets)
        return lambda u: diagonal * u

    def output_fisher_product(self, outputs):
        diagonal = self._fisher_diag(outputs)
        return lambda u: diagonal * u


class GaussianTanhMeanLoss(DiagonalLoss):
    r"""Non-matching: Gaussian with mean tanh(z), :math:`L = \|y - \tanh z\|^2/(2σ^2)`.

    With t = tanh z, the output Hessian is diag((1 − t²)[(1 − t²) + 2 t (y − t)])/σ²
    (depends on y, can be negative) while the output Fisher is diag((1 − t²)²)/σ²
    (always PSD), so here F ≠ GGN.
    """

    key = "gaussian_tanh_mean"
    label = "Gaussian with tanh mean (non-matching)"
    matching = False
    convex = False

    def __init__(self, num_outputs: int, sigma: float = 1.0) -> None:
        super().__init__(num_outputs)
        if not sigma > 0:
            raise ValueError(f"sigma = {sigma!r} must be positive")
        self.sigma = float(sigma)
        self.precision = 1.0 / self.sigma**2

    def per_example(self, outputs, targets):
        return 0.5 * self.precision * (targets - torch.tanh(outputs)).pow(2).sum(-1)

    def output_grad(self, outputs, targets):
        t = torch.tanh(outputs)
        return -self.precision * (targets - t) * (1 - t * t)

    def _hessian_diag(self, outputs, targets):
        t = torch.tanh(outputs)
        slope = 1 - t * t
        return self.precision * slope * (slope + 2 * t * (targets - t))

    def _fisher_diag(self, outputs):
        t = torch.tanh(outputs)
        return self.precision * (1 - t * t).pow(2)

    def sample(self, outputs, generator):
        noise = _randn(outputs.shape, outputs, generator)
        return torch.tanh(outputs) + self.sigma * noise

    def kl(self, outputs_p, outputs_q):
        diff = torch.tanh(outputs_p) - torch.tanh(outputs_q)
        return 0.5 * self.precision * diff.pow(2).sum(-1)

    def torch_loss(self):
        return LikelihoodLoss(self)

    def mean(self, outputs):
        return torch.tanh(outputs)

    def describe(self):
        return f"‖y − tanh(z)‖² / (2σ²) with σ = {self.sigma:g}"


class GaussianMeanScaleLoss(LossSpec):
    r"""Gaussian with learned mean and scale, z = (μ, s) for scalar targets (N, 1).

    ``parameterization="sigma"``: σ = s; ``"log_sigma"``: σ = exp(s).
    :math:`L = (y - μ)^2 / (2σ^2) + \log σ`. Neither is a natural parameterization,
    so the output Hessian depends on y while the Fisher is diag(1/σ², 2/σ²) for σ
    and diag(1/σ², 2) for log σ (Martens 2020, Amari 1998).
    """

    key = "gaussian_mean_scale"
    label = "Gaussian with learned mean and scale"
    matching = False
    convex = False
    parameterizations = ("sigma", "log_sigma")

    def __init__(self, parameterization: str = "sigma") -> None:
        super().__init__(2)
        if parameterization not in self.parameterizations:
            raise ValueError(
                f"parameterization = {parameterization!r} must be one of "
                f"{', '.join(self.parameterizations)}"
            )
        self.parameterization = parameterization

    def _mu_sigma(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        mu, s = outputs[..., 0], outputs[..., 1]
        return mu, (s.exp() if self.parameterization == "log_sigma" else s)

    def per_example(self, outputs, targets):
        mu, sigma = self._mu_sigma(outputs)
        return 0.5 * ((targets[..., 0] - mu) / sigma).pow(2) + sigma.log()

    def output_grad(self, outputs, targets):
        mu, sigma = self._mu_sigma(outputs)
        r = targets[..., 0] - mu
        d_mu = -r / sigma**2
        if self.parameterization == "log_sigma":
            d_s = 1 - r**2 / sigma**2
        else:
            d_s = 1 / sigma - r**2 / sigma**3
        return torch.stack([d_mu, d_s], -1)

    def output_hessian(self, outputs, targets):
        mu, sigma = self._mu_sigma(outputs)
        r = targets[..., 0] - mu
        h_mm = 1 / sigma**2
        if self.parameterization == "log_sigma":
            h_ms = 2 * r / sigma**2
            h_ss = 2 * r**2 / sigma**2
        else:
            h_ms = 2 * r / sigma**3
            h_ss = 3 * r**2 / sigma**4 - 1 / sigma**2
        row0 = torch.stack([h_mm, h_ms], -1)
        row1 = torch.stack([h_ms, h_ss], -1)
        return torch.stack([row0, row1], -2)

    def output_fisher(self, outputs):
        _, sigma = self._mu_sigma(outputs)
        f_mm = 1 / sigma**2
        f_ss = (
            torch.full_like(f_mm, 2.0)
            if self.parameterization == "log_sigma"
            else (2 / sigma**2)
        )
        return torch.diag_embed(torch.stack([f_mm, f_ss], -1))

    def output_fisher_sqrt(self, outputs):
        return self.output_fisher(outputs).sqrt()

    def sample(self, outputs, generator):
        mu, sigma = self._mu_sigma(outputs)
        noise = _randn(mu.shape, mu, generator)
        return (mu + sigma * noise).unsqueeze(-1)

    def kl(self, outputs_p, outputs_q):
        mu_p, sigma_p = self._mu_sigma(outputs_p)
        mu_q, sigma_q = self._mu_sigma(outputs_q)
        ratio = (sigma_p**2 + (mu_p - mu_q) ** 2) / (2 * sigma_q**2)
        return (sigma_q / sigma_p).log() + ratio - 0.5

    def torch_loss(self):
        return LikelihoodLoss(self)

    def mean(self, outputs):
        return outputs[..., :1]

    def describe(self):
        scale = "σ = exp(s)" if self.parameterization == "log_sigma" else "σ = s"
        return f"(y − μ)² / (2σ²) + log σ with z = (μ, s), {scale} (constant ½log 2π dropped)"


class PoissonLoss(DiagonalLoss):
    r"""Poisson counts with rate λ(z): :math:`L = λ - y \log λ` (log y! dropped).

    ``link="log"``: λ = exp(z), the natural parameterization, so the output Hessian
    diag(λ) equals the output Fisher and F = G. ``link="softplus"``: λ = log(1 + eᶻ),
    not natural: with s = sigmoid(z) the output Hessian is
    diag(s(1 − s)(1 − y/λ) + y s²/λ²), which depends on y, while the Fisher is
    diag(s²/λ), so F ≠ G. Both are convex in z (λ is convex and log λ concave).
    """

    key = "poisson"
    label = "Poisson counts"
    links = ("log", "softplus")

    def __init__(self, num_outputs: int, link: str = "log") -> None:
        super().__init__(num_outputs)
        if link not in self.links:
            raise ValueError(f"link = {link!r} must be one of {', '.join(self.links)}")
        self.link = link
        self.matching = link == "log"

    def rate(self, outputs: Tensor) -> Tensor:
        """λ(z) (N, C)."""
        if self.link == "log":
            return outputs.exp()
        return torch.nn.functional.softplus(outputs)

    def per_example(self, outputs, targets):
        rate = self.rate(outputs)
        log_rate = outputs if self.link == "log" else rate.log()
        return (rate - targets * log_rate).sum(-1)

    def output_grad(self, outputs, targets):
        rate = self.rate(outputs)
        if self.link == "log":
            return rate - targets
        return torch.sigmoid(outputs) * (1 - targets / rate)

    def _hessian_diag(self, outputs, targets):
        rate = self.rate(outputs)
        if self.link == "log":
            return rate
        s = torch.sigmoid(outputs)
        return s * (1 - s) * (1 - targets / rate) + targets * s * s / rate**2

    def _fisher_diag(self, outputs):
        rate = self.rate(outputs)
        if self.link == "log":
            return rate
        return torch.sigmoid(outputs).pow(2) / rate

    def sample(self, outputs, generator):
        rate = self.rate(outputs).detach()
        # torch.poisson draws on the CPU in float64 for a seed-stable stream
        draws = torch.poisson(rate.to("cpu", torch.float64), generator=generator)
        return draws.to(device=outputs.device, dtype=outputs.dtype)

    def kl(self, outputs_p, outputs_q):
        rate_p, rate_q = self.rate(outputs_p), self.rate(outputs_q)
        return (rate_p * (rate_p / rate_q).log() - rate_p + rate_q).sum(-1)

    def torch_loss(self):
        if self.link == "log":
            return nn.PoissonNLLLoss(log_input=True, full=False, reduction="mean")
        return LikelihoodLoss(self)

    @property
    def loss_scale(self):
        # PyTorch's mean runs over N·C entries, ours over N
        return float(self.num_outputs) if self.link == "log" else 1.0

    def mean(self, outputs):
        return self.rate(outputs)

    def describe(self):
        rate = "exp(z)" if self.link == "log" else "log(1 + eᶻ)"
        return f"λ − y·log λ with λ = {rate} (log y! dropped)"


class GaussianHeteroscedasticLoss(LossSpec):
    r"""Gaussian with a learned mean and log-variance per target dimension.

    Layout: for D target dimensions the network has C = 2D outputs,
    ``z = [μ_1 … μ_D, s_1 … s_D]`` (means first, then log-variances s = log σ²);
    targets are (N, D) and ``num_outputs`` is 2D (``num_targets`` is D). Per example

    .. math:: L = \sum_d \tfrac12 \big(s_d + (y_d - μ_d)^2 e^{-s_d}\big),

    the constant ½ log 2π per target dropped (as for ``gaussian_mean_scale``), mean
    over examples. With r = y − μ and v = e^{−s}, per dimension d:

    * ∇_z L: ∂L/∂μ_d = −r_d v_d, ∂L/∂s_d = ½(1 − r_d² v_d);
    * ∇²_z L: the 2 × 2 block on (μ_d, s_d) is [[v, r v], [r v, ½ r² v]], blocks of
      different d are uncoupled; its determinant is −½ r² v² < 0 whenever y ≠ μ, so
      the output Hessian is indefinite and the GGN can be too (``convex = False``);
    * F_R(z) = diag(v_1 … v_D, ½ … ½), independent of y and always positive definite.

    (μ, s) is not the natural parameter (μ/σ², −1/(2σ²)) of the Gaussian, so the
    GGN, built from the labels' output Hessian, differs from the Fisher: the split
    between network and loss decides what the GGN is (Martens 2020, section 9).

    PyTorch's ``GaussianNLLLoss`` takes ``(input, target, var)`` with a variance
    clamped at ``eps``, not the ``(outputs, targets)`` call curvlinops and BackPACK
    make, so :meth:`torch_loss` is the :class:`LikelihoodLoss` module that evaluates
    :meth:`value` (as for the other losses without a PyTorch equivalent), with
    ``loss_scale`` 1.

    >>> loss = GaussianHeteroscedasticLoss(1)
    >>> float(loss.value(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0]])))
    2.0
    """

    key = "gaussian_heteroscedastic"
    label = "Gaussian with learned mean and log-variance (heteroscedastic)"
    matching = False
    convex = False

    def __init__(self, num_targets: int = 1) -> None:
        if num_targets < 1:
            raise ValueError(f"num_targets = {num_targets} must be at least 1")
        super().__init__(2 * int(num_targets))
        self.num_targets = int(num_targets)

    def _split(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, s), each (N, D), from outputs (N, 2D)."""
        if outputs.shape[-1] != self.num_outputs:
            raise ValueError(
                f"outputs have {outputs.shape[-1]} columns; {self.key} with "
                f"{self.num_targets} target(s) needs {self.num_outputs} = [μ, log σ²]"
            )
        return outputs[..., : self.num_targets], outputs[..., self.num_targets :]

    def _residual(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(r = y − μ, v = e^{−s}), each (N, D)."""
        mu, s = self._split(outputs)
        if targets.shape[-1] != self.num_targets:
            # a (N, 2D) target would broadcast silently against μ when D = 1
            raise ValueError(
                f"targets have {targets.shape[-1]} columns; {self.key} needs "
                f"{self.num_targets}"
            )
        return targets - mu, torch.exp(-s)

    def variance(self, outputs: Tensor) -> Tensor:
        """σ² = e^{s} (N, D)."""
        return self._split(outputs)[1].exp()

    def per_example(self, outputs, targets):
        r, v = self._residual(outputs, targets)
        s = self._split(outputs)[1]
        return 0.5 * (s + r * r * v).sum(-1)

    def output_grad(self, outputs, targets):
        r, v = self._residual(outputs, targets)
        return torch.cat([-r * v, 0.5 * (1 - r * r * v)], -1)

    def _hessian_parts(self, outputs, targets) -> tuple[Tensor, Tensor, Tensor]:
        """The (μ, μ), (μ, s) and (s, s) entries v, r v, ½ r² v, each (N, D)."""
        r, v = self._residual(outputs, targets)
        rv = r * v
        return v, rv, 0.5 * r * rv

    def output_hessian(self, outputs, targets):
        h_mm, h_ms, h_ss = self._hessian_parts(outputs, targets)
        d = self.num_targets
        # μ_d and s_d sit D apart, so the coupling is the ±D-th off-diagonal
        return (
            torch.diag_embed(torch.cat([h_mm, h_ss], -1))
            + torch.diag_embed(h_ms, offset=d)
            + torch.diag_embed(h_ms, offset=-d)
        )

    @staticmethod
    def _block_product(h_mm, h_ms, h_ss, u, d):
        u_mu, u_s = u[..., :d], u[..., d:]
        return torch.cat([h_mm * u_mu + h_ms * u_s, h_ms * u_mu + h_ss * u_s], -1)

    def output_hessian_vp(self, outputs, targets, u):
        parts = self._hessian_parts(outputs, targets)
        return self._block_product(*parts, u, self.num_targets)

    def output_hessian_product(self, outputs, targets):
        parts = self._hessian_parts(outputs, targets)
        d = self.num_targets
        return lambda u: self._block_product(*parts, u, d)

    def _fisher_diag(self, outputs: Tensor) -> Tensor:
        """The diagonal of F_R(z), [e^{−s_1} … e^{−s_D}, ½ … ½] (N, 2D)."""
        s = self._split(outputs)[1]
        return torch.cat([torch.exp(-s), torch.full_like(s, 0.5)], -1)

    def output_fisher(self, outputs):
        return torch.diag_embed(self._fisher_diag(outputs))

    def output_fisher_vp(self, outputs, u):
        return self._fisher_diag(outputs) * u

    def output_fisher_product(self, outputs):
        diagonal = self._fisher_diag(outputs)
        return lambda u: diagonal * u

    def output_fisher_sqrt(self, outputs):
        return torch.diag_embed(self._fisher_diag(outputs).sqrt())

    def sample(self, outputs, generator):
        mu, s = self._split(outputs)
        return mu + torch.exp(0.5 * s) * _randn(mu.shape, mu, generator)

    def kl(self, outputs_p, outputs_q):
        # KL(N(μp, e^{sp}) ‖ N(μq, e^{sq})) = ½[sq − sp + (e^{sp} + (μp − μq)²)e^{−sq} − 1]
        mu_p, s_p = self._split(outputs_p)
        mu_q, s_q = self._split(outputs_q)
        ratio = (s_p.exp() + (mu_p - mu_q).pow(2)) * torch.exp(-s_q)
        return 0.5 * (s_q - s_p + ratio - 1).sum(-1)

    def torch_loss(self):
        return LikelihoodLoss(self)

    def mean(self, outputs):
        return self._split(outputs)[0]

    def describe(self):
        d = self.num_targets
        layout = "z = (μ, s)" if d == 1 else f"z = [μ_1…μ_{d}, s_1…s_{d}]"
        return (
            f"Σ_d ½(s_d + (y_d − μ_d)²·e^(−s_d)) with {layout}, s = log σ² "
            "(constant ½log 2π dropped)"
        )


LIKELIHOODS: dict[str, type[LossSpec]] = {
    cls.key: cls
    for cls in (
        GaussianLoss,
        BernoulliLoss,
        CategoricalLoss,
        GaussianTanhMeanLoss,
        GaussianMeanScaleLoss,
        PoissonLoss,
        GaussianHeteroscedasticLoss,
    )
}
