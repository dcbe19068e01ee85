r"""``tiny_transformer``: modular addition learned by a one- or two-layer transformer.

The task (Power et al. 2022, "grokking"): for a modulus p (by default the prime 23)
every pair (a, b) ∈ {0..p−1}² is one example, the sequence of token ids
``[a, b, =]`` (the ``=`` token has id p, so the vocabulary has p + 1 tokens),
labelled c = (a + b) mod p. All p² pairs exist; a seeded random fraction trains,
the rest is the test set.

``Problem.inputs`` are these token ids, int64 (N, 3), not floats: they index an
embedding table, so the problem never casts them to its floating dtype.

The model, with d = ``d_model`` and per layer (pre-LayerNorm, as GPT-2):

.. math::

    h_0 &= E[x_t] + P_t \qquad (t = 1..T), \\
    h &\leftarrow h + \mathrm{Attn}(\mathrm{LN}_1(h)), \qquad
    h \leftarrow h + W_2\,φ(W_1\,\mathrm{LN}_2(h) + b_1) + b_2, \\
    z &= W_U\,\mathrm{LN}_f(h_T) + b_U \in R^p,

with causal multi-head self-attention written out from four ``nn.Linear``
projections applied to every position, for heads of width d/H:

.. math:: \mathrm{Attn}(u) = W_O\,\big[\mathrm{softmax}\big(Q_hK_h^\top/\sqrt{d/H}
          + M\big)V_h\big]_{h=1..H}, \quad Q = W_Q u,\ K = W_K u,\ V = W_V u,

M the causal mask (−∞ above the diagonal). It is not ``nn.MultiheadAttention``:
that module's fused fast path does not compose with ``torch.func`` (the generic
curvature products vmap jvp/vjp through ``functional_call``) and hides the linear
maps from layer-wise curvatures such as K-FAC. The logits of the last position
(the ``=`` token, which attends to a and b) are softmax cross-entropy over p classes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import CategoricalLoss
from explorer.problems.models import ACTIVATIONS
from explorer.problems.networks import activation_option, split
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase

#: Tokens per example: a, b and "=".
SEQUENCE_LENGTH = 3


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention from four ``nn.Linear`` maps.

    Args:
        d_model: Width d of the residual stream.
        heads: Number of heads H (d must be a multiple of H).

    Shapes: (N, T, d) -> (N, T, d). The projections act on the last dimension, so
    each is one ``nn.Linear`` applied to all N·T positions.
    """

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(
                f"option 'd_model' = {d_model} must be a multiple of option "
                f"'heads' = {heads}"
            )
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        # (N, T, d) -> (N, H, T, d/H)
        n, t, d = x.shape
        return x.view(n, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = (
            self._split(self.query(x)),
            self._split(self.key(x)),
            self._split(self.value(x)),
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        # A position attends to itself and the earlier ones only.
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(-1)
        mixed = (weights @ v).transpose(1, 2).reshape(n, t, d)
        return self.out(mixed)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: h + Attn(LN₁ h), then h + MLP(LN₂ h); (N, T, d) -> same."""

    def __init__(self, d_model: int, heads: int, mlp_width: int, activation: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_width)
        self.activation = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(mlp_width, d_model)

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.attention(self.norm1(h))
        return h + self.fc2(self.activation(self.fc1(self.norm2(h))))


class TinyTransformer(nn.Module):
    """Token + learned position embeddings, blocks, final LayerNorm, linear head.

    Shapes: token ids (N, T) int64 -> logits of the last position (N, num_classes).
    """

    def __init__(
        self,
        vocab: int,
        length: int,
        num_classes: int,
        *,
        d_model: int,
        heads: int,
        num_layers: int,
        mlp_width: int,
        activation: str,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(length, d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, heads, mlp_width, activation)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dtype.is_floating_point:
            raise ValueError(
                f"TinyTransformer takes integer token ids, got {ids.dtype} inputs"
            )
        # Positions index the same rows for every sequence: P[:T] broadcasts.
        h = self.tokens(ids) + self.positions.weight[: ids.shape[-1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[:, -1]))


def transformer_num_params(options: dict[str, Any]) -> int:
    """P of ``tiny_transformer`` with resolved ``options``, without building it.

    With vocabulary V = p + 1, T = 3 positions, d = ``d_model``, m = ``mlp_width``
    and L blocks: embeddings (V + T)·d; per block two LayerNorms (4d), four d × d
    projections with biases 4(d² + d) and the MLP (d + 1)·m + (m + 1)·d; the final
    LayerNorm 2d and the head (d + 1)·p.

    >>> transformer_num_params({"modulus": 23, "d_model": 12, "mlp_width": 48,
    ...                         "num_layers": 1})
    2531
    """
    p, d, m = options["modulus"], options["d_model"], options["mlp_width"]
    block = 4 * d + 4 * (d * d + d) + (d + 1) * m + (m + 1) * d
    return (
        (p + 1 + SEQUENCE_LENGTH) * d
        + options["num_layers"] * block
        + 2 * d
        + (d + 1) * p
    )


def init_transformer(model: nn.Module, generator: torch.Generator) -> None:
    """Seeded init from ``generator``, in module order.

    Embedding rows ~ N(0, 1/d) (so ‖E[x]‖ ≈ 1 before LayerNorm rescales it); linear
    weights and biases ~ U(−1/√fan_in, 1/√fan_in), PyTorch's default; LayerNorm
    gains 1 and shifts 0.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                scale = 1.0 / math.sqrt(module.embedding_dim)
                draw = torch.randn(
                    module.weight.shape, generator=generator, dtype=torch.float64
                )
                module.weight.copy_(scale * draw)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                for param in module.parameters():
                    draw = torch.rand(
                        param.shape, generator=generator, dtype=torch.float64
                    )
                    param.copy_((2 * draw - 1) * bound)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


def modular_addition(modulus: int) -> tuple[Tensor, Tensor]:
    """All p² sequences ``[a, b, p]`` (p², 3) int64 and labels (a + b) mod p (p²,)."""
    a, b = torch.meshgrid(torch.arange(modulus), torch.arange(modulus), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    equals = torch.full_like(a, modulus)
    return torch.stack([a, b, equals], 1), (a + b) % modulus


# ------------------------------------------------------------- tiny_transformer
def build_tiny_transformer(options: dict[str, Any], context: BuildContext) -> Problem:
    p = options["modulus"]
    ids, labels = modular_addition(p)
    train, test = split(len(labels), 1.0 - options["train_fraction"], context.generator)
    if len(train) == 0:
        raise ValueError(
            f"option 'train_fraction' = {options['train_fraction']} leaves no "
            f"training pair of the {p * p} for modulus = {p}"
        )
    model = TinyTransformer(
        p + 1,
        SEQUENCE_LENGTH,
        p,
        d_model=options["d_model"],
        heads=options["heads"],
        num_layers=options["num_layers"],
        mlp_width=options["mlp_width"],
        activation=options["activation"],
    ).double()
    init_transformer(model, context.generator)
    # Token ids stay int64: only the device changes, never the dtype.
    layers = options["num_layers"]
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="tiny_transformer",
        label=(
            f"(a + b) mod {p}, transformer {layers} layer{'s' * (layers > 1)}, "
            f"d = {options['d_model']}"
        ),
        loss=CategoricalLoss(p),
        **context.data_fields(ids, labels, train, test),
        options=options,
        description=TINY_TRANSFORMER.description,
    )


TINY_TRANSFORMER = ProblemSpec(
    key="tiny_transformer",
    label="Modular addition (tiny transformer)",
    architecture="transformer, 1 layer, d = 12, 2 heads",
    build=build_tiny_transformer,
    count_params=transformer_num_params,
    options=(
        Option(
            "modulus",
            23,
            "p: the task is (a + b) mod p on all p² pairs (p classes).",
            low=2,
            high=113,
        ),
        Option(
            "num_layers", 1, "Transformer blocks (attention + MLP).", choices=(1, 2)
        ),
        Option(
            "d_model",
            12,
            "Width of the embeddings and the residual stream.",
            low=2,
            high=256,
        ),
        Option(
            "heads", 2, "Attention heads (d_model must be a multiple).", low=1, high=16
        ),
        Option(
            "mlp_width",
            48,
            "Hidden width of each block's MLP (4·d_model as in GPT).",
            low=1,
            high=1024,
        ),
        activation_option("relu"),
        Option(
            "train_fraction",
            0.5,
            "Fraction of the p² pairs used for training (the rest is the test set).",
            low=0.0,
            high=1.0,
            low_exclusive=True,
        ),
    ),
    description=(
        "Modular addition (a + b) mod 23 on all 529 pairs, as token sequences "
        "[a, b, =], learned by a one-layer transformer (token and position "
        "embeddings, causal two-head self-attention from explicit linear "
        "projections, LayerNorm, an MLP block) classifying from the last position; "
        "P = 2,531. Half the pairs train, half test, as in the grokking "
        "experiments: memorizing the training pairs is easy, generalizing to the "
        "held-out ones is not. Softmax attention and LayerNorm give a Hessian far "
        "from the GGN."
    ),
    tags=frozenset({"classification", "sequences", "token_inputs"}),
    # Curvature steps on 128 of the 265 training pairs: each product is a
    # torch.func pass through attention, so half the batch halves the step.
    run_defaults={"curvature_batch_size": 128},
    test_cases=(
        TinyCase(
            "transformer_tiny",
            {
                "modulus": 7,
                "d_model": 4,
                "heads": 2,
                "mlp_width": 4,
                "train_fraction": 0.6,
            },
        ),
        TinyCase(
            "transformer_two_layers",
            {
                "modulus": 5,
                "num_layers": 2,
                "d_model": 3,
                "heads": 1,
                "mlp_width": 3,
                "activation": "tanh",
                "train_fraction": 0.8,
            },
        ),
    ),
)
