"""A result store shared by every session of the web server: memory, then disk.

Finished results (our own dataclasses holding torch tensors and lists) are keyed by
a stable text key such as ``"run-3f2a…"`` and kept in two layers:

1. **Memory**, an LRU map bounded by *bytes*: each value is charged its pickled
   size. Results range from a few kilobytes (a short history on a small problem)
   to hundreds of megabytes (a fine landscape grid), so a bound on the number of
   entries would either waste memory or let a handful of large entries exhaust it.
2. **Disk** (optional), one pickle file ``<key>.pkl`` per entry in a directory,
   bounded by bytes as well; after each put the least recently used files (oldest
   modification time; a disk hit refreshes it) are deleted until the total fits.
   The disk layer survives a restart of the server.

A value larger than the memory bound lives only on disk, and one larger than the
disk bound is not written. Every operation runs under one :class:`threading.Lock`,
so the store can be shared by the threads that serve sessions.

Warning:
    The disk layer is read with :mod:`pickle`, and unpickling can run arbitrary
    code. The directory must be private to the server: it is created with mode
    ``0o700``, and nothing else should be able to write into it.

Example:
    >>> store = ResultStore(memory_bytes=2**20)
    >>> store.put("run-1", {"loss": [1.0, 0.5]})
    >>> store.get("run-1")
    {'loss': [1.0, 0.5]}
    >>> "run-2" in store
    False
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ByteLRU", "ResultStore", "value_bytes"]

MiB = 2**20
#: The memory bound :meth:`ResultStore.from_environment` never exceeds.
DEFAULT_MEMORY_BYTES = 256 * MiB
#: The disk bound when ``EXPLORER_CACHE_MB`` is not set.
DEFAULT_DISK_BYTES = 1024 * MiB

#: Keys become file names, so they are restricted to characters that are safe in one
#: (no separators, no spaces) and to a length well under the usual 255-byte limit.
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_SUFFIX = ".pkl"
#: Temporary files of an unfinished write; they never end in ``.pkl``.
_TEMP_PREFIX = ".incoming-"
_TEMP_SUFFIX = ".tmp"


def _check_key(key: object) -> str:
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise ValueError(
            f"invalid result key {key!r}: expected 1 to 200 characters "
            "from A-Z, a-z, 0-9, '_', '.' and '-'"
        )
    return key


def _check_bound(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


class ResultStore:
    """A thread-safe two-layer cache ``key -> value``, bounded by bytes.

    Memory holds the most recently used values as live objects; :meth:`get`
    returns the stored object itself, so callers must treat values as read-only
    (they are shared between sessions). Sizes are the length of the value's pickle
    (:data:`pickle.HIGHEST_PROTOCOL`), computed once per :meth:`put`; that is the
    exact size of the disk file and a fair estimate of the memory the value holds.

    Disk writes are atomic: the pickle goes to a temporary file in the same
    directory, which :func:`os.replace` then renames onto ``<key>.pkl``. A reader
    (this process after a restart, or another worker on the same directory)
    therefore sees the old file or the new one, never half of one. Files are not
    ``fsync``-ed: a power cut may at worst leave a truncated file, and a file that
    cannot be read or unpickled is treated as a miss and deleted, never raised.

    The disk total is computed from the directory on construction and kept up to
    date by this store; whenever it exceeds the bound, the directory is scanned
    again, so files removed or added by someone else are accounted for then.

    Args:
        directory: Where the disk layer keeps its files, created (mode ``0o700``)
            with its parents if missing; ``None`` keeps results in memory only.
            Must be private to the server (see the module docstring).
        memory_bytes: The bound on the pickled size of the values in memory.
        disk_bytes: The bound on the total size of the files on disk.

    Attributes:
        directory: The disk layer's directory, or ``None``.
        memory_bytes: The memory bound.
        disk_bytes: The disk bound.
        disk_problem: Why the disk layer is missing or failed last (a directory
            that cannot be created, a write that failed), or ``None``.

    Raises:
        ValueError: If a bound is negative or not an integer.
        OSError: If the directory cannot be created or written into.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk_bytes: int = DEFAULT_DISK_BYTES,
    ) -> None:
        self.memory_bytes = _check_bound("memory_bytes", memory_bytes)
        self.disk_bytes = _check_bound("disk_bytes", disk_bytes)
        self.directory = None if directory is None else Path(directory)
        self.disk_problem: str | None = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._memory_used = 0
        self._disk_used = 0
        if self.directory is not None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Creating and removing a file proves the directory is writable
            # (os.access would say yes to root even on a read-only mount).
            handle, probe = tempfile.mkstemp(
                dir=self.directory, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX
            )
            os.close(handle)
            os.unlink(probe)
            with self._lock:
                self._disk_used = sum(size for _, _, size in self._scan_disk())
                self._evict_disk(keep=None)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ResultStore:
        """Builds the server's store from environment variables.

        * ``EXPLORER_CACHE_DIR``: the disk layer's directory; ``none`` (any case)
          disables it. Unset or empty: ``$XDG_CACHE_HOME/curvature-explorer/results``,
          or ``~/.cache/curvature-explorer/results`` without an absolute
          ``XDG_CACHE_HOME``.
        * ``EXPLORER_CACHE_MB``: the disk bound in MiB (default 1024, fractions
          allowed). The memory bound is the smaller of 256 MiB and the disk bound,
          unless ``EXPLORER_CACHE_MEMORY_MB`` sets it (MiB).

        A directory that cannot be created or written into does not stop the
        server: the store then keeps results in memory only and says why in
        :attr:`disk_problem`.

        Args:
            environ: The variables to read (default: the process environment).

        Returns:
            The configured store.

        Raises:
            ValueError: If ``EXPLORER_CACHE_MB`` is not a non-negative number; the
                message names the variable and its value.
        """
        raw_mb = environ.get("EXPLORER_CACHE_MB", "").strip()
        disk_bytes = DEFAULT_DISK_BYTES if not raw_mb else _parse_mib(raw_mb)
        memory_bytes = min(DEFAULT_MEMORY_BYTES, disk_bytes)
        raw_memory = environ.get("EXPLORER_CACHE_MEMORY_MB", "").strip()
        if raw_memory:
            memory_bytes = _parse_mib(raw_memory, "EXPLORER_CACHE_MEMORY_MB")

        raw_dir = environ.get("EXPLORER_CACHE_DIR", "").strip()
        if raw_dir.lower() == "none":
            return cls(None, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
        directory = (
            Path(raw_dir).expanduser() if raw_dir else _default_directory(environ)
        )
        try:
            return cls(directory, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
        except OSError as error:
            store = cls(None, memory_bytes=memory_bytes, disk_bytes=disk_bytes)
            store.disk_problem = (
                f"cannot use the cache directory {str(directory)!r} ({error}); "
                "results are kept in memory only"
            )
            return store

    # ------------------------------------------------------------------ queries
    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or ``None`` on a miss.

        Memory is looked up first. On a disk hit the file's modification time is
        refreshed (it is the disk layer's recency) and the value is promoted to
        memory if it fits there. A file that cannot be read or unpickled is
        deleted and counts as a miss.

        Raises:
            ValueError: If ``key`` is not a valid key.
        """
        _check_key(key)
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                return entry[0]
            if self.directory is None:
                return None
            path = self._path(key)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError:
                self._discard_file(path)
                return None
            try:
                value = pickle.loads(data)
            except Exception:  # a corrupt pickle raises almost anything
                self._discard_file(path, size=len(data))
                return None
            with contextlib.suppress(OSError):  # removed meanwhile: still a good value
                os.utime(path)
            self._remember(key, value, len(data))
            return value

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is in memory or has a file on disk (not read, not touched).

        Raises:
            ValueError: If ``key`` is not a valid key.
        """
        _check_key(key)
        with self._lock:
            if key in self._memory:
                return True
            return self.directory is not None and self._path(key).is_file()

    def __len__(self) -> int:
        """The number of entries in memory."""
        with self._lock:
            return len(self._memory)

    @property
    def memory_used(self) -> int:
        """The pickled size of the values in memory, in bytes."""
        with self._lock:
            return self._memory_used

    @property
    def disk_used(self) -> int:
        """The total size of the files on disk, in bytes (0 without a disk layer)."""
        with self._lock:
            return self._disk_used

    # ---------------------------------------------------------------- updates
    def put(self, key: str, value: Any) -> None:
        """Stores ``value`` under ``key`` in both layers, replacing an older value.

        The value is pickled once: its length is the size charged to memory and
        the content of the disk file. Least recently used entries are evicted
        until each layer is within its bound; a value larger than a layer's bound
        is not kept in that layer (and an older value there is dropped). A failed
        disk write is recorded in :attr:`disk_problem`, not raised.

        Raises:
            ValueError: If ``key`` is not a valid key.
            pickle.PicklingError: If the value cannot be pickled (other errors of
                :func:`pickle.dumps`, such as ``TypeError``, pass through too).
        """
        _check_key(key)
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._remember(key, value, len(data))
            if self.directory is not None:
                self._write(key, data)

    def clear(self) -> None:
        """Empties both layers (the disk layer's files and leftover temporaries)."""
        with self._lock:
            self._memory.clear()
            self._memory_used = 0
            if self.directory is None:
                return
            for path, _, size in self._scan_disk(temporaries=True):
                self._discard_file(path, size=size)
            self._disk_used = 0

    # ------------------------------------------------- helpers (lock is held)
    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}{_SUFFIX}"

    def _remember(self, key: str, value: Any, size: int) -> None:
        """Puts ``value`` first in the memory LRU, evicting the least recent."""
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_used -= old[1]
        if size > self.memory_bytes:
            return
        while self._memory and self._memory_used + size > self.memory_bytes:
            _, (_, evicted) = self._memory.popitem(last=False)
            self._memory_used -= evicted
        self._memory[key] = (value, size)
        self._memory_used += size

    def _write(self, key: str, data: bytes) -> None:
        """Writes ``data`` atomically to ``key``'s file, then enforces the bound."""
        assert self.directory is not None
        path = self._path(key)
        try:
            old_size = path.stat().st_size
        except OSError:
            old_size = 0
        if len(data) > self.disk_bytes:
            if old_size:
                self._discard_file(path, size=old_size)  # never serve a stale value
            return
        temp: str | None = None
        try:
            handle, temp = tempfile.mkstemp(
                dir=self.directory, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX
            )
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temp, path)
        except OSError as error:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            self.disk_problem = f"cannot write {str(path)!r}: {error}"
            return
        self._disk_used += len(data) - old_size
        self._evict_disk(keep=path)

    def _evict_disk(self, keep: Path | None) -> None:
        """Deletes the oldest files until the total is within the bound.

        Args:
            keep: A file never to delete (the one just written, which fits by
                itself), so that coarse modification times cannot evict it.
        """
        if self._disk_used <= self.disk_bytes:
            return
        files = sorted(self._scan_disk(), key=lambda item: item[1])
        self._disk_used = sum(size for _, _, size in files)  # resynchronize
        for path, _, size in files:
            if self._disk_used <= self.disk_bytes:
                break
            if path != keep:
                self._discard_file(path, size=size)

    def _scan_disk(self, temporaries: bool = False) -> list[tuple[Path, float, int]]:
        """``(path, mtime, size)`` of every entry file in the directory.

        Args:
            temporaries: Whether to list the temporary files of unfinished writes
                too (for :meth:`clear`).
        """
        assert self.directory is not None
        found = []
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        for entry in entries:
            name = entry.name
            if not (_is_entry_name(name) or (temporaries and _is_temp_name(name))):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                status = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.append((Path(entry.path), status.st_mtime, status.st_size))
        return found

    def _discard_file(self, path: Path, size: int | None = None) -> None:
        """Deletes a file if possible and takes its size off the disk total."""
        if size is None:
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
        try:
            path.unlink()
        except OSError:  # already gone, or not removable: nothing to take off
            return
        self._disk_used = max(0, self._disk_used - size)


def _is_entry_name(name: str) -> bool:
    return name.endswith(_SUFFIX) and _KEY.fullmatch(name[: -len(_SUFFIX)]) is not None


def _is_temp_name(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def _parse_mib(raw: str, name: str = "EXPLORER_CACHE_MB") -> int:
    """The value of variable ``name`` (MiB) in bytes."""
    try:
        mib = float(raw)
    except ValueError:
        mib = float("nan")
    if not (0 <= mib < float("inf")):  # also rejects nan
        raise ValueError(f"{name} must be a non-negative number of MiB, got {raw!r}")
    return int(mib * MiB)


def _default_directory(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/curvature-explorer/results`` or the ``~/.cache`` one."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec ignores relative paths
        base = Path(xdg)
    else:
        home = environ.get("HOME")
        base = (Path(home) if home else Path.home()) / ".cache"
    return base / "curvature-explorer" / "results"


# ------------------------------------------------- live objects bounded by bytes
def value_bytes(value: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """About how many bytes the arrays inside ``value`` hold.

    Counts torch tensors (``numel · element_size``, a storage shared by several
    views once), NumPy arrays and Python numbers, walking dicts, lists, tuples,
    sets and objects' attributes (``__dict__`` and ``__slots__``) to a depth of 8;
    everything else counts 0. Cheap enough to run on every insertion: the result
    of a view holds a handful of tensors, not millions of objects.

    >>> import torch
    >>> value_bytes({"H": torch.zeros(10, 10, dtype=torch.float64), "n": [1.0, 2.0]})
    864
    """
    import numpy as np
    import torch

    seen = set() if _seen is None else _seen
    if _depth > 8 or id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, bool | int | float | complex):
        return 32  # the object and its slot in a container
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    children: Any = ()
    if isinstance(value, Mapping):
        children = list(value.values())
    elif isinstance(value, list | tuple | set | frozenset):
        children = value
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        children = list(vars(value).values())
    elif hasattr(value, "__slots__"):
        children = [getattr(value, n, None) for n in value.__slots__]
    return sum(value_bytes(child, seen, _depth + 1) for child in children)


class ByteLRU:
    """A thread-safe LRU map of live objects, bounded by the bytes they hold.

    For caches whose values are not pickled (a worker's built problems and the
    operators of a point, the web process's figures): each value is charged
    :func:`value_bytes`, measured again whenever the map is used, because some
    values grow after insertion (a point's matrices are added one by one). The
    least recently used entries are dropped until the total fits; the entry just
    used is kept even when it alone is larger.

    Args:
        max_bytes: The bound.

    Example:
        >>> cache = ByteLRU(max_bytes=100)
        >>> cache.put("a", b"x" * 60); cache.put("b", b"y" * 60)
        >>> "a" in cache, "b" in cache  # a was the least recently used
        (False, True)
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = _check_bound("max_bytes", max_bytes)
        self._lock = threading.Lock()
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._evict()

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def used(self) -> int:
        """The bytes the values hold now."""
        with self._lock:
            return sum(value_bytes(v) for v in self._items.values())

    def trim(self) -> None:
        """Evicts until within the bound (after values grew in place)."""
        with self._lock:
            self._evict()

    def _evict(self) -> None:
        sizes = {key: value_bytes(value) for key, value in self._items.items()}
        total = sum(sizes.values())
        while total > self.max_bytes and len(self._items) > 1:
            key, _ = self._items.popitem(last=False)
            total -= sizes[key]
