r"""``mnist1d_mlp``: MNIST-1D (Greydanus 2020), generated here, classified by an MLP.

MNIST-1D turns ten hand-drawn 12-point templates, one per digit, into 40-point
signals by a fixed chain of random transformations (per example, in this order):

1. pad the template (plus 1e-8, so the signal is non-zero) with p ~ U{36..60}
   zeros on the right, then resample it linearly to 12 + 60 = 72 points;
2. scale by 1 + 0.4·(u − ½), u ~ U(0, 1);
3. translate circularly by k ~ U{0..47} places;
4. replace the exactly-zero samples by correlated noise: 0.25·ε, ε ~ N(0, I),
   smoothed by a Gaussian filter of width 2;
5. add iid noise 0.02·ε;
6. shear: subtract 0.75·(u − ½)·linspace(−½, ½, 72);
7. resample linearly to 40 points.

The 10·⌊N/10⌋ signals (classes in blocks) are shuffled by one permutation and the
whole array is standardized, x ← (x − mean)/std over all entries. The random draws
come from one ``np.random.RandomState(data_seed)`` in exactly the order of the
``mnist1d`` package's ``make_dataset``/``transform``, so for the same arguments and
seed the signals here equal ``mnist1d.data.make_dataset(args)`` bit for bit (a test
checks it against the package). The package itself is not imported at run time: it
imports ``requests`` and ``matplotlib`` and reseeds NumPy's global generator.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from scipy.interpolate import interp1d
from scipy.ndimage import gaussian_filter

from explorer.options import Option
from explorer.problems.base import Problem
from explorer.problems.likelihoods import CategoricalLoss
from explorer.problems.models import mlp_num_params
from explorer.problems.networks import (
    _network_problem,
    activation_option,
    hidden_option,
    split,
    test_fraction_option,
)
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase

#: The canonical dataset's seed (``mnist1d.data.get_dataset_args()['seed']``).
CANONICAL_SEED = 42
#: Length of the final signals.
SIGNAL_LENGTH = 40

# The transformation constants of ``mnist1d.data.get_dataset_args`` (2020 release).
_TEMPLATE_LEN = 12
_PADDING = (36, 60)
_SCALE_COEFF = 0.4
_MAX_TRANSLATION = 48
_CORR_NOISE_SCALE = 0.25
_IID_NOISE_SCALE = 2e-2
_SHEAR_SCALE = 0.75
_EPS = 1e-8


def templates() -> tuple[np.ndarray, np.ndarray]:
    """The ten digit templates x (10, 12) on the grid t (12,), as ``mnist1d`` has them.

    Each hand-drawn curve is whitened (mean 0, std 1), shifted to start at 0 and
    divided by 6; t = linspace(−5, 5, 12)/6.
    """
    x = np.stack(
        [
            np.asarray([5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5]),
            np.asarray([5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5]),
            np.asarray([5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5]),
            np.asarray([5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5]),
            np.asarray([5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5]),
            np.asarray([5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5]),
            np.asarray([5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5]),
            np.asarray([5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5]),
            np.asarray([5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5]),
            np.asarray([5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5]),
        ]
    )
    # The same in-place steps as the package, so the floats agree to the last bit.
    x -= x.mean(1, keepdims=True)
    x /= x.std(1, keepdims=True)
    x -= x[:, :1]
    return x / 6.0, np.linspace(-5, 5, _TEMPLATE_LEN) / 6.0


def _resample(x: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of ``x`` from its own uniform grid onto ``length`` points
    (SciPy's ``interp1d``, as the package, so the rounding is the same).
    """
    old = np.linspace(0, 1, len(x))
    return interp1d(old, x, axis=0, kind="linear")(np.linspace(0, 1, length))


def _transform(template: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """One 40-point signal from a 12-point template: steps 1–7 of the module doc.

    The draws, in order: pad (rand), scale (rand), translate (choice), correlated
    noise (randn, 72), iid noise (randn, 72), shear (rand).
    """
    low, high = _PADDING
    pad = low + int(rng.rand() * (high - low + 1))
    x = np.concatenate([template + _EPS, np.zeros(pad)])
    x = _resample(x, _TEMPLATE_LEN + high)
    x *= 1 + _SCALE_COEFF * (rng.rand() - 0.5)
    k = rng.choice(_MAX_TRANSLATION)
    x = np.concatenate([x[-k:], x[:-k]])  # k = 0 keeps x (x[-0:] is all of it)
    mask = x != 0
    smooth = gaussian_filter(_CORR_NOISE_SCALE * rng.randn(*x.shape), 2)
    x = mask * x + (1 - mask) * smooth
    x = x + _IID_NOISE_SCALE * rng.randn(*x.shape)
    x = x - _SHEAR_SCALE * (rng.rand() - 0.5) * np.linspace(-0.5, 0.5, len(x))
    return _resample(x, SIGNAL_LENGTH)


@functools.lru_cache(maxsize=8)
def make_mnist1d(
    num_samples: int = 5000, data_seed: int = CANONICAL_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST-1D signals and labels, before any train/test split.

    Args:
        num_samples: The package's ``num_samples``; ⌊num_samples/10⌋ signals per
            class are made.
        data_seed: The package's ``seed`` (42: the canonical dataset).

    Returns:
        ``(x, y)``: standardized signals (M, 40) float64 and labels (M,) int64 with
        M = 10·⌊num_samples/10⌋, in the package's shuffled order, so its
        ``make_dataset`` gives ``x[:split], x[split:]`` as ``x, x_test`` with
        ``split = int(0.8·M)``. Cached per process; read-only.
    """
    if num_samples < 10:
        raise ValueError(f"num_samples = {num_samples} must be at least 10")
    rng = np.random.RandomState(data_seed)
    shapes, _ = templates()
    per_class = num_samples // len(shapes)
    signals = [_transform(shape, rng) for shape in shapes for _ in range(per_class)]
    labels = np.repeat(np.arange(len(shapes), dtype=np.int64), per_class)
    order = rng.permutation(len(labels))
    x, y = np.stack(signals)[order], labels[order]
    x = (x - x.mean()) / x.std()
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


# --------------------------------------------------------------- mnist1d_mlp
def build_mnist1d_mlp(options: dict[str, Any], context: BuildContext) -> Problem:
    signals, labels = make_mnist1d(options["num_samples"], options["data_seed"])
    train, test = split(len(labels), options["test_fraction"], context.generator)
    if options["train_size"] is not None:
        if options["train_size"] > len(train):
            raise ValueError(
                f"option 'train_size' = {options['train_size']} exceeds the "
                f"{len(train)} training examples of num_samples = "
                f"{options['num_samples']} with test_fraction = "
                f"{options['test_fraction']}"
            )
        train = train[: options["train_size"]]
    sizes = (SIGNAL_LENGTH, *options["hidden"], 10)
    return _network_problem(
        sizes,
        options,
        context,
        inputs=torch.as_tensor(np.array(signals)),
        targets=torch.as_tensor(np.array(labels)),
        train=train,
        test=test,
        key="mnist1d_mlp",
        label=f"MNIST-1D, MLP {'-'.join(map(str, sizes))}",
        loss=CategoricalLoss(10),
        description=MNIST1D_MLP.description,
    )


MNIST1D_MLP = ProblemSpec(
    key="mnist1d_mlp",
    label="MNIST-1D (MLP)",
    architecture="MLP 40-32-10, ReLU",
    build=build_mnist1d_mlp,
    count_params=lambda options: mlp_num_params(
        (SIGNAL_LENGTH, *options["hidden"], 10)
    ),
    options=(
        Option(
            "num_samples",
            5000,
            "Signals generated (train + test), ⌊N/10⌋ per digit; 5,000 as the "
            "original.",
            low=10,
            high=100_000,
        ),
        Option(
            "data_seed",
            CANONICAL_SEED,
            "Seed of the generator; 42 gives the canonical MNIST-1D signals (the "
            "run's seed draws the split and the initial weights).",
            low=0,
            high=2**32 - 1,
        ),
        hidden_option((32,)),
        activation_option("relu"),
        test_fraction_option(0.2),
        Option(
            "train_size",
            None,
            "Use only this many training examples (default: all).",
            low=1,
            high=100_000,
            kind="int",
            nullable=True,
        ),
    ),
    description=(
        "MNIST-1D (Greydanus 2020): ten hand-drawn 1-D digit templates padded, "
        "scaled, shifted, sheared and buried in correlated and white noise, "
        "resampled to 40 points; generated here exactly as the original package "
        "does (data_seed 42 is the canonical set). Harder than 8×8 digits for an "
        "MLP yet tiny: 40-32-10 has P = 1,642, so dense Hessian, GGN and Fisher "
        "fit, and a seeded 80/20 split of the 5,000 signals shows the test gap."
    ),
    tags=frozenset({"classification", "generated_data"}),
    # As digits_mlp: curvature steps on 128 of the 4,000 signals are 20 CG
    # iterations of cheap products rather than a P × P factorization.
    run_defaults={"curvature_batch_size": 128},
    test_cases=(
        TinyCase(
            "mnist1d_relu",
            {"num_samples": 100, "hidden": (4,), "train_size": 30},
        ),
        TinyCase(
            "mnist1d_tanh",
            {
                "num_samples": 60,
                "hidden": (3,),
                "activation": "tanh",
                "train_size": 20,
                "data_seed": 3,
            },
        ),
    ),
)
