"""Registries: dict-like maps from short stable keys to specs.

A new problem, curvature or update rule is one module plus one ``register`` line; the
UI selectors, the command line and the contract tests iterate over these registries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownKeyError(KeyError, ValueError):
    """An unknown registry key; the message lists the valid keys.

    It is both a ``KeyError`` (dict semantics) and a ``ValueError`` (bad user input).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, read-mostly mapping ``key -> spec`` with helpful errors.

    Args:
        kind: What the entries are, for error messages ("problem", "curvature"...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, key: str, entry: T, *, overwrite: bool = False) -> T:
        """Adds ``entry`` under ``key``; refuses to replace one unless ``overwrite``."""
        if not isinstance(key, str) or not key.isidentifier() or key != key.lower():
            raise ValueError(
                f"{self.kind} key {key!r} must be a lower-case snake_case identifier"
            )
        if key in self._entries and not overwrite:
            raise ValueError(
                f"{self.kind} {key!r} is already registered; pass overwrite=True "
                "to replace it"
            )
        self._entries[key] = entry
        return entry

    def unregister(self, key: str) -> None:
        """Removes ``key`` (used by tests and by plugin reloading)."""
        self[key]  # raises the helpful error when absent
        del self._entries[key]

    def __getitem__(self, key: str) -> T:
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            valid = ", ".join(self._entries) or "(none registered)"
            raise UnknownKeyError(
                f"unknown {self.kind} {key!r}; valid keys: {valid}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, keys={list(self._entries)})"
