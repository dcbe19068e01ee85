"""``PRESETS``: every claim of THEORY.md §5 as data (texts, configuration, sizes).

The presets themselves are declared in the five ``catalog_*`` modules (curvature
matrices, the empirical Fisher, optimizer runs, the newer model families: conv nets,
counts, heteroscedastic outputs; today's preconditioners: Sophia, Shampoo): their
texts as Markdown, then one :meth:`~explorer.presets.base.Catalog.add` each with the
study it runs (``measure`` and ``draw``, from the computation modules) and its
configuration, so the tour page, the tests and a notebook read the same data. Sizes:
``"small"`` runs each check in a few seconds on 2 CPU cores (CI runs all of them),
``"full"`` is the page's default.
"""

from __future__ import annotations

from explorer.presets import (
    catalog_fisher,
    catalog_matrices,
    catalog_models,
    catalog_preconditioners,
    catalog_training,
)
from explorer.presets.base import Preset
from explorer.registry import Registry

#: Claim id -> its statement (THEORY.md §5 and the quadratic-model preset).
CLAIMS: dict[str, str] = {
    "C1": "Fisher = GGN for matching losses",
    "C2": "Hessian = GGN + residual term",
    "C3": "The empirical Fisher is not the Fisher",
    "C4": "Natural gradient is invariant to reparameterization",
    "C5": "Damping makes large steps safe",
    "C6": "Fisher efficiency and the small-budget regime",
    "C7": "K-FAC approximates the Fisher",
    "QM": "Quadratic models of H and G",
    "PC": "Which matrix a preconditioner estimates",
}

#: Every preset by key, in the order of :data:`CLAIMS`.
PRESETS: Registry[Preset] = Registry("preset")

_ALL = (
    *catalog_matrices.CATALOG,
    *catalog_fisher.CATALOG,
    *catalog_training.CATALOG,
    *catalog_models.CATALOG,
    *catalog_preconditioners.CATALOG,
)
for _claim in CLAIMS:
    for _preset in _ALL:
        if _preset.claim == _claim:
            PRESETS.register(_preset.key, _preset)
unknown = sorted({p.claim for p in _ALL} - set(CLAIMS))
if unknown:  # pragma: no cover - a catalog typo
    raise ValueError(f"presets name unknown claims {unknown}; add them to CLAIMS")
del _claim, _preset, unknown
