"""Loading user plugins, never taking the caller down.

A plugin is a Python file that registers curvatures (``@ex.register_curvature``)
and/or problems (``ex.register_problem(ex.ProblemSpec(...))``, typically building
them with ``ex.problem_from_module``). Plugins come from, in this order:

1. explicit paths (``python -m explorer ... --plugin path/to/file.py``),
2. a ``plugins/`` folder (the app passes the one next to ``app.py``),
3. the ``EXPLORER_PLUGINS`` environment variable (paths separated by ``:``; a folder
   loads every ``*.py`` in it),
4. installed packages advertising the ``explorer.curvatures`` or
   ``explorer.problems`` entry-point groups.

Each load returns a :class:`PluginReport`; an import error, an exception while
registering, or a registration clash becomes the report's ``error`` text instead of an
exception. What a plugin registers carries its ``source`` (the file or entry
point), so the app lists its problems under "yours". Loading the same file again
replaces what it registered before, so an app rerun or an edited plugin never
clashes with itself.

Code a person uploads to the app is *private*: :func:`load_private_plugin` loads it
for one owner (a browser session), and :func:`listed` leaves what it registered out
of every other owner's lists. The registries stay one per process (a key names one
registration), so an identical upload by a second owner shares the first one's
registration instead of executing the code again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.registry import CURVATURES, register_curvature
from explorer.problems.spec import PROBLEMS, ProblemSpec, register_problem

ENV_VARIABLE = "EXPLORER_PLUGINS"
ENTRY_POINT_GROUP = "explorer.curvatures"
PROBLEM_ENTRY_POINT_GROUP = "explorer.problems"

#: The registries a plugin may add to.
_REGISTRIES = (CURVATURES, PROBLEMS)

#: The files of private (uploaded) plugins -> the owners who may list what they
#: registered; a source not here (plugins/, EXPLORER_PLUGINS, entry points, the
#: command line) is listed for everyone.
_OWNERS: dict[str, set[str]] = {}
#: Each private file's text digest, and the file each digest was loaded from.
_TEXTS: dict[str, str] = {}
_FILES: dict[str, str] = {}
_PRIVATE_LOCK = threading.Lock()


@dataclass(frozen=True)
class PluginReport:
    """What loading one plugin did.

    Attributes:
        source: The file path or ``entry point <name>``.
        keys: Curvature keys it registered.
        error: A readable description of what went wrong, or None.
        problems: Problem keys it registered.
    """

    source: str
    keys: tuple[str, ...] = ()
    error: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        """One line for logs and the UI."""
        if self.error:
            return f"{self.source}: FAILED — {self.error.strip().splitlines()[-1]}"
        parts = [", ".join(self.keys)] if self.keys else []
        if self.problems:
            parts.append("problems " + ", ".join(self.problems))
        return f"{self.source}: {'; '.join(parts) or 'nothing registered'}"


def _error_text(error: BaseException) -> str:
    frames = traceback.format_exception(
        type(error), error, error.__traceback__, limit=-3
    )
    return "".join(frames).strip()


def _forget(source: str) -> None:
    for registry in _REGISTRIES:
        for key in [key for key, spec in registry.items() if spec.source == source]:
            registry.unregister(key)


def _keys() -> tuple[set[str], set[str]]:
    """The curvature and problem keys registered now."""
    return set(CURVATURES), set(PROBLEMS)


def _claim(
    keys_before: tuple[set[str], set[str]], source: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Marks the curvature and problem keys registered since ``keys_before`` as
    coming from ``source``.
    """
    added = []
    for registry, before in zip(_REGISTRIES, keys_before, strict=True):
        new = tuple(key for key in registry if key not in before)
        for key in new:
            spec = dataclasses.replace(registry[key], source=source)
            registry.register(key, spec, overwrite=True)
        added.append(new)
    return added[0], added[1]


def _drop(keys: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    """Unregisters half-registered state of a plugin that failed."""
    for registry, new in zip(_REGISTRIES, keys, strict=True):
        for key in new:
            registry.unregister(key)


def load_plugin_file(path: str | os.PathLike[str]) -> PluginReport:
    """Imports one plugin file and reports the curvatures it registered."""
    file = Path(path).expanduser().resolve()
    source = str(file)
    if not file.is_file() or file.suffix != ".py":
        return PluginReport(source, error=f"not a Python file: {file}")
    _forget(source)
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    module_name = f"explorer_plugin_{file.stem}_{digest}"
    keys_before = _keys()
    try:
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            return PluginReport(source, error=f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as error:  # a broken plugin must not take the caller down
        sys.modules.pop(module_name, None)
        _drop(_claim(keys_before, source))
        return PluginReport(source, error=_error_text(error))
    curvatures, problems = _claim(keys_before, source)
    return PluginReport(source, keys=curvatures, problems=problems)


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _registered_by(source: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The curvature and problem keys registered from ``source`` now."""
    curvatures, problems = (
        tuple(key for key, spec in registry.items() if spec.source == source)
        for registry in _REGISTRIES
    )
    return curvatures, problems


def load_private_plugin(
    text: str, path: str | os.PathLike[str], owner: str
) -> PluginReport:
    """Loads plugin code ``text`` for ``owner`` alone (an uploaded file).

    The code is written to ``path`` — a file in a private folder the caller made
    (``tempfile.mkdtemp``: mode 0o700, a name nobody can guess) — and imported;
    what it registers is listed for ``owner`` only (:func:`listed`). The same text
    already loaded for another owner is not executed again: ``owner`` joins that
    registration's owners. Loading other text to the same ``path`` replaces what
    it registered before, for ``owner`` alone.

    Returns:
        The report; a failure is a report, never a raise.
    """
    file = Path(path).expanduser().resolve()
    source, digest = str(file), _text_digest(text)
    with _PRIVATE_LOCK:
        shared = _FILES.get(digest)
        if shared is not None and _TEXTS.get(shared) == digest:
            curvatures, problems = _registered_by(shared)
            if curvatures or problems:
                _OWNERS[shared].add(owner)
                return PluginReport(shared, keys=curvatures, problems=problems)
        # owned before it registers anything: never listed for another owner
        _OWNERS[source] = {owner}
        _TEXTS[source] = digest
    file.write_text(text, encoding="utf-8")
    report = load_plugin_file(file)
    if report.ok:
        with _PRIVATE_LOCK:
            _FILES[digest] = source
    return report


def visible(source: str, owner: str | None = None) -> bool:
    """Whether what ``source`` registered is listed for ``owner``: everything
    but other owners' private plugins (``owner=None``: the public ones only).
    """
    owners = _OWNERS.get(source)
    return owners is None or owner in owners


def listed(registry: Mapping[str, Any], owner: str | None = None) -> list[str]:
    """The keys of ``registry`` (curvatures, problems) listed for ``owner``, in
    registration order (see :func:`visible`).
    """
    return [
        key
        for key, spec in registry.items()
        if visible(getattr(spec, "source", ""), owner)
    ]


def plugin_files(location: str | os.PathLike[str]) -> list[Path]:
    """The ``*.py`` files of a folder (sorted; ``_``-prefixed ones skipped) or a file."""
    path = Path(location).expanduser()
    if path.is_dir():
        return sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
    return [path]


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[PluginReport]:
    """Loads installed plugins advertised under an entry-point group.

    An entry point may name a module (importing it registers what it declares), a
    ``CurvatureOperator`` subclass or function (registered as a curvature under the
    entry point's name) or a ``ProblemSpec`` (registered as a problem).
    """
    reports = []
    for entry in metadata.entry_points(group=group):
        source = f"entry point {entry.name} ({entry.value})"
        _forget(source)
        keys_before = _keys()
        try:
            target = entry.load()
            _register_entry(entry.name, target, source)
        except Exception as error:
            _drop(_claim(keys_before, source))
            reports.append(PluginReport(source, error=_error_text(error)))
            continue
        curvatures, problems = _claim(keys_before, source)
        reports.append(PluginReport(source, keys=curvatures, problems=problems))
    return reports


def _register_entry(name: str, target: object, source: str) -> None:
    """Registers what an entry point names (a module registered itself on import)."""
    if isinstance(target, ProblemSpec):
        if target.key not in PROBLEMS:  # not a reload of one already registered
            register_problem(target)
        return
    is_operator = isinstance(target, type) and issubclass(target, CurvatureOperator)
    if (is_operator or callable(target)) and name not in CURVATURES:
        register_curvature(name, label=name, source=source)(target)


def load_plugins(
    paths: Iterable[str | os.PathLike[str]] = (),
    folder: str | os.PathLike[str] | None = None,
    use_environment: bool = True,
    use_entry_points: bool = True,
) -> list[PluginReport]:
    """Loads plugins from every source (see the module docstring), in order.

    Returns:
        One report per plugin file or entry point; failures are reports, not raises.
    """
    locations: list[Path] = []
    for path in paths:
        locations.extend(plugin_files(path))
    if folder is not None and Path(folder).is_dir():
        locations.extend(plugin_files(folder))
    if use_environment:
        for entry in os.environ.get(ENV_VARIABLE, "").split(os.pathsep):
            if entry.strip():
                locations.extend(plugin_files(entry.strip()))
    reports: list[PluginReport] = []
    seen: set[Path] = set()
    for location in locations:
        resolved = location.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        reports.append(load_plugin_file(resolved))
    if use_entry_points:
        reports.extend(load_entry_points())
        reports.extend(load_entry_points(PROBLEM_ENTRY_POINT_GROUP))
    return reports
