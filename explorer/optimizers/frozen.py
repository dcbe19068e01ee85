"""Immutable, hashable mappings of option values (the options inside a RunConfig).

:class:`FrozenOptions` holds options as given; :class:`ResolvedOptions` marks a
complete, validated set (defaults filled in) for one owner, so the code that
receives it (building a rule, checking it against a problem) does not validate it
again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class FrozenOptions(Mapping[str, Any]):
    """A read-only mapping with sorted keys, hashable when its values are.

    Lists and tuples become tuples and nested mappings become ``FrozenOptions``, so
    ``{"hidden": [32]}`` and ``{"hidden": (32,)}`` are equal and hash alike.

    Example:
        >>> a = FrozenOptions({"hidden": [32], "activation": "tanh"})
        >>> a == FrozenOptions({"activation": "tanh", "hidden": (32,)})
        True
        >>> hash(a) == hash(FrozenOptions({"hidden": (32,), "activation": "tanh"}))
        True
    """

    __slots__ = ("_items",)

    def __init__(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        merged = dict(values or {})
        merged.update(more)
        for key in merged:
            if not isinstance(key, str):
                raise ValueError(f"option names must be strings, got {key!r}")
        self._items: tuple[tuple[str, Any], ...] = tuple(
            sorted((key, freeze(value)) for key, value in merged.items())
        )

    def __getitem__(self, key: str) -> Any:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenOptions):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self == FrozenOptions(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenOptions({dict(self._items)!r})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists (JSON-able)."""
        return {name: thaw(value) for name, value in self._items}


class ResolvedOptions(FrozenOptions):
    """Options validated against ``owner``'s schema, every default filled in.

    Only a schema's ``resolve`` makes one (e.g. ``RuleSpec.resolve``); it compares
    equal to a :class:`FrozenOptions` with the same items.

    Example:
        >>> resolved = ResolvedOptions({"lr": 0.1}, owner="rule 'sgd'")
        >>> resolved.owner, resolved == FrozenOptions({"lr": 0.1})
        ("rule 'sgd'", True)
    """

    __slots__ = ("owner",)

    def __init__(self, values: Mapping[str, Any], *, owner: str) -> None:
        super().__init__(values)
        self.owner = owner

    def __hash__(self) -> int:
        return super().__hash__()

    def __repr__(self) -> str:
        return f"ResolvedOptions({self.to_dict()!r}, owner={self.owner!r})"


def freeze(value: Any) -> Any:
    """Lists/tuples -> tuples, mappings -> :class:`FrozenOptions`, primitives as-is."""
    if isinstance(value, FrozenOptions):
        return value
    if isinstance(value, Mapping):
        return FrozenOptions(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"option value {value!r} of type {type(value).__name__} is not allowed; use "
        "numbers, strings, booleans, None, lists or mappings of those"
    )


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze` (tuples -> lists, mappings -> dicts)."""
    if isinstance(value, FrozenOptions):
        return value.to_dict()
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value
