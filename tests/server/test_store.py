"""ResultStore: the memory LRU by bytes, the bounded disk layer, the environment."""

from __future__ import annotations

import os
import pickle
import stat
import threading
import time
from pathlib import Path

import pytest
import torch

from explorer.runs.history import COLUMNS, History
from explorer.server.store import ResultStore

MB = 1_000_000


def blob(fill: int, size: int = MB) -> bytes:
    """A value whose pickle is ``size`` plus a few header bytes."""
    return bytes([fill]) * size


def pickled(value: object) -> int:
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def files(directory: Path) -> dict[str, int]:
    """Entry file name -> size, as the file system reports them."""
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.suffix == ".pkl"}


def set_mtime(path: Path, seconds_ago: float) -> None:
    moment = time.time() - seconds_ago
    os.utime(path, (moment, moment))


# ------------------------------------------------------------------ round trips
def test_round_trip_of_a_dict_with_a_tensor_in_memory_and_from_disk(tmp_path):
    value = {
        "theta": torch.arange(6, dtype=torch.float64).reshape(2, 3),
        "steps": [0, 1],
    }
    store = ResultStore(tmp_path / "results")
    store.put("run-3f2a", value)
    assert torch.equal(store.get("run-3f2a")["theta"], value["theta"])

    fresh = ResultStore(tmp_path / "results")  # nothing in memory: read from disk
    got = fresh.get("run-3f2a")
    assert got is not value
    assert got["steps"] == [0, 1]
    assert got["theta"].dtype == torch.float64
    assert torch.equal(got["theta"], value["theta"])


def test_round_trip_of_a_history_dataclass(tmp_path):
    trajectory = torch.linspace(0, 1, 8, dtype=torch.float64).reshape(4, 2)
    history = History(
        config=None,
        rule="gd",
        label="GD",
        metrics={column: [1.0, 0.5] for column in COLUMNS},
        trajectory=trajectory,
        trajectory_steps=[0, 1, 2, 3],
    )
    ResultStore(tmp_path).put("run-history", history)
    got = ResultStore(tmp_path).get("run-history")
    assert isinstance(got, History)
    assert got.metrics["loss"] == [1.0, 0.5]
    assert got.trajectory_steps == [0, 1, 2, 3]
    assert torch.equal(got.trajectory, trajectory)


def test_a_miss_is_none_and_put_replaces(tmp_path):
    store = ResultStore(tmp_path, memory_bytes=10 * MB)
    assert store.get("absent") is None
    store.put("k", [1, 2])
    store.put("k", [3])
    assert store.get("k") == [3]
    assert len(store) == 1
    assert store.memory_used == pickled([3])
    assert files(tmp_path) == {"k.pkl": pickled([3])}
    assert store.disk_used == pickled([3])


def test_contains_looks_at_both_layers_without_loading(tmp_path):
    store = ResultStore(tmp_path, memory_bytes=0)  # memory keeps nothing
    store.put("on-disk", [1])
    assert len(store) == 0
    assert "on-disk" in store
    assert "absent" not in store
    assert len(store) == 0  # `in` does not promote
    memory_only = ResultStore(None)
    memory_only.put("m", 1)
    assert "m" in memory_only
    assert "n" not in memory_only


# ------------------------------------------------------------------ memory LRU
def test_memory_lru_evicts_the_least_recently_used_by_bytes(tmp_path):
    store = ResultStore(tmp_path, memory_bytes=3_500_000)  # room for three 1 MB values
    for i, key in enumerate(["a", "b", "c"]):
        store.put(key, blob(i))
    assert len(store) == 3
    assert store.memory_used == 3 * pickled(blob(0))

    assert store.get("a") == blob(0)  # now "b" is the least recently used
    store.put("d", blob(3))

    assert len(store) == 3
    assert store.memory_used == 3 * pickled(blob(0)) <= 3_500_000
    # "b" left memory but is still on disk; a disk hit promotes it again.
    assert set(files(tmp_path)) == {"a.pkl", "b.pkl", "c.pkl", "d.pkl"}
    os.remove(tmp_path / "b.pkl")
    assert store.get("b") is None  # proves "b" was not in memory any more
    for key, fill in (("a", 0), ("c", 2), ("d", 3)):
        os.remove(tmp_path / f"{key}.pkl")
        assert store.get(key) == blob(fill)  # served from memory


def test_memory_eviction_follows_sizes_not_counts():
    store = ResultStore(None, memory_bytes=2_000_000)
    for i in range(10):
        store.put(f"small-{i}", blob(i, 1000))
    store.put("big", blob(99, 1_998_000))
    # The big value leaves room for one small value: nine leave, the newest stays.
    remaining = [f"small-{i}" for i in range(10) if f"small-{i}" in store]
    assert remaining == ["small-9"]
    assert store.memory_used == pickled(blob(99, 1_998_000)) + pickled(blob(9, 1000))


def test_a_disk_hit_is_promoted_to_memory(tmp_path):
    ResultStore(tmp_path).put("k", blob(1, 1000))
    store = ResultStore(tmp_path)
    assert len(store) == 0
    assert store.memory_used == 0
    assert store.get("k") == blob(1, 1000)
    assert len(store) == 1
    assert store.memory_used == pickled(blob(1, 1000))


def test_a_value_over_the_memory_bound_is_found_on_disk(tmp_path):
    store = ResultStore(tmp_path, memory_bytes=MB)
    store.put("small", blob(0, 1000))
    store.put("big", blob(1, 2 * MB))
    assert len(store) == 1  # only "small" is in memory, and "big" did not evict it
    assert store.memory_used == pickled(blob(0, 1000))
    assert store.get("big") == blob(1, 2 * MB)
    assert len(store) == 1  # the disk hit is not promoted either
    assert files(tmp_path)["big.pkl"] == pickled(blob(1, 2 * MB))


def test_replacing_with_a_value_too_big_for_memory_drops_the_old_one():
    store = ResultStore(None, memory_bytes=MB)
    store.put("k", blob(0, 1000))
    store.put("k", blob(1, 2 * MB))
    assert store.get("k") is None  # never the stale small value
    assert store.memory_used == 0


# ------------------------------------------------------------------ disk layer
def test_disk_bound_is_respected_after_many_puts(tmp_path):
    bound = 5 * pickled(blob(0, 100_000)) + 10
    store = ResultStore(tmp_path, memory_bytes=0, disk_bytes=bound)
    for i in range(20):
        store.put(f"run-{i}", blob(i, 100_000))
        on_disk = files(tmp_path)
        assert sum(on_disk.values()) <= bound
        assert store.disk_used == sum(on_disk.values())
        set_mtime(tmp_path / f"run-{i}.pkl", seconds_ago=1000 - i)  # strictly ordered
    assert set(files(tmp_path)) == {f"run-{i}.pkl" for i in range(15, 20)}


def test_the_file_with_the_oldest_mtime_is_the_one_deleted(tmp_path):
    size = pickled(blob(0, 1000))
    store = ResultStore(tmp_path, memory_bytes=0, disk_bytes=3 * size)
    for key in ("a", "b", "c"):
        store.put(key, blob(0, 1000))
    # Not the insertion order: "b" is the oldest, then "c", then "a".
    set_mtime(tmp_path / "a.pkl", 100)
    set_mtime(tmp_path / "b.pkl", 300)
    set_mtime(tmp_path / "c.pkl", 200)
    store.put("d", blob(0, 1000))
    assert set(files(tmp_path)) == {"a.pkl", "c.pkl", "d.pkl"}
    assert store.disk_used == 3 * size


def test_a_disk_hit_touches_the_file_so_it_survives_eviction(tmp_path):
    size = pickled(blob(0, 1000))
    store = ResultStore(tmp_path, memory_bytes=0, disk_bytes=2 * size)
    store.put("old", blob(0, 1000))
    store.put("new", blob(1, 1000))
    set_mtime(tmp_path / "old.pkl", 300)
    set_mtime(tmp_path / "new.pkl", 200)
    before = time.time()
    assert store.get("old") == blob(0, 1000)
    assert (tmp_path / "old.pkl").stat().st_mtime >= before - 1
    store.put("third", blob(2, 1000))
    assert set(files(tmp_path)) == {"old.pkl", "third.pkl"}


def test_a_value_over_the_disk_bound_is_not_written(tmp_path):
    store = ResultStore(tmp_path, memory_bytes=10 * MB, disk_bytes=MB)
    store.put("k", blob(0, 1000))
    store.put("k", blob(1, 2 * MB))
    assert files(tmp_path) == {}  # the older, smaller file is gone too
    assert store.disk_used == 0
    assert store.get("k") == blob(1, 2 * MB)  # still in memory


def test_a_new_store_on_the_same_directory_finds_earlier_entries(tmp_path):
    first = ResultStore(tmp_path / "results")
    first.put("run-1", {"loss": [3.0, 2.0]})
    first.put("run-2", torch.ones(4))
    expected = sum(files(tmp_path / "results").values())

    second = ResultStore(tmp_path / "results")
    assert (
        second.disk_used
        == expected
        == pickled({"loss": [3.0, 2.0]}) + pickled(torch.ones(4))
    )
    assert "run-1" in second
    assert second.get("run-1") == {"loss": [3.0, 2.0]}
    assert torch.equal(second.get("run-2"), torch.ones(4))


def test_a_restart_with_a_smaller_bound_trims_the_directory(tmp_path):
    size = pickled(blob(0, 1000))
    first = ResultStore(tmp_path)
    for i, key in enumerate(["a", "b", "c", "d"]):
        first.put(key, blob(i, 1000))
        set_mtime(tmp_path / f"{key}.pkl", 100 - i)
    second = ResultStore(tmp_path, disk_bytes=2 * size)
    assert set(files(tmp_path)) == {"c.pkl", "d.pkl"}
    assert second.disk_used == 2 * size


@pytest.mark.parametrize(
    "content",
    [b"\x00garbage\xff" * 10, b"", pickle.dumps({"x": list(range(100))})[:-7]],
    ids=["garbage", "empty", "truncated"],
)
def test_a_corrupted_file_is_a_miss_and_is_removed(tmp_path, content):
    store = ResultStore(tmp_path)
    store.put("good", [1])
    (tmp_path / "bad.pkl").write_bytes(content)
    restarted = ResultStore(tmp_path)
    assert restarted.disk_used == pickled([1]) + len(content)
    assert restarted.get("bad") is None
    assert not (tmp_path / "bad.pkl").exists()
    assert restarted.disk_used == pickled([1])
    assert restarted.get("good") == [1]


def test_an_unreadable_entry_is_a_miss(tmp_path):
    store = ResultStore(tmp_path)
    (tmp_path / "odd.pkl").mkdir()  # a directory where a file should be
    assert store.get("odd") is None
    assert store.disk_used == 0


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path, monkeypatch):
    store = ResultStore(tmp_path, memory_bytes=0)
    store.put("k", [1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pkl"]

    def failing_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    store.put("k", [2])  # a failed write is recorded, not raised
    assert store.disk_problem is not None
    assert "No space left" in store.disk_problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pkl"]
    monkeypatch.undo()
    assert ResultStore(tmp_path).get("k") == [1]  # the old file is intact


def test_the_directory_is_created_private(tmp_path):
    directory = tmp_path / "a" / "b" / "results"
    ResultStore(directory)
    assert directory.is_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_clear_empties_both_layers(tmp_path):
    store = ResultStore(tmp_path)
    for i in range(3):
        store.put(f"k{i}", [i])
    (tmp_path / ".incoming-leftover.tmp").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("not ours")
    store.clear()
    assert len(store) == 0
    assert store.memory_used == 0
    assert store.disk_used == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert store.get("k0") is None


def test_memory_only_store_has_no_disk(tmp_path):
    store = ResultStore(None)
    store.put("k", [1])
    assert store.get("k") == [1]
    assert store.disk_used == 0
    assert store.directory is None


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "key", ["", "a/b", "../escape", "a b", "ключ", "x" * 201, "k\x00", None, 3]
)
def test_an_invalid_key_raises_value_error(tmp_path, key):
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match="invalid result key"):
        store.put(key, 1)
    with pytest.raises(ValueError, match="invalid result key"):
        store.get(key)
    with pytest.raises(ValueError, match="invalid result key"):
        key in store  # noqa: B015
    assert list(tmp_path.iterdir()) == []


def test_valid_keys_include_dots_dashes_and_underscores(tmp_path):
    store = ResultStore(tmp_path, memory_bytes=0)
    for key in ("run-3f2a", "a.b_c-D9", "..", "x" * 200):
        store.put(key, key)
        assert store.get(key) == key
    assert (tmp_path / "...pkl").is_file()


@pytest.mark.parametrize("bounds", [{"memory_bytes": -1}, {"disk_bytes": 1.5}])
def test_bad_bounds_raise(bounds):
    with pytest.raises(ValueError, match="non-negative integer"):
        ResultStore(None, **bounds)


# ------------------------------------------------------------------ environment
def test_environment_none_disables_the_disk_layer(tmp_path):
    for value in ("none", "NONE", " None "):
        store = ResultStore.from_environment(
            {"EXPLORER_CACHE_DIR": value, "XDG_CACHE_HOME": str(tmp_path)}
        )
        assert store.directory is None
        assert store.disk_problem is None
        store.put("k", [1])
        assert store.get("k") == [1]
    assert list(tmp_path.iterdir()) == []


def test_environment_directory_and_bounds(tmp_path):
    store = ResultStore.from_environment(
        {"EXPLORER_CACHE_DIR": str(tmp_path / "cache"), "EXPLORER_CACHE_MB": "2"}
    )
    assert store.directory == tmp_path / "cache"
    assert store.disk_problem is None
    assert store.disk_bytes == 2 * 2**20
    assert store.memory_bytes == 2 * 2**20  # min(256 MiB, disk bound)
    store.put("k", [1])
    assert (tmp_path / "cache" / "k.pkl").is_file()

    large = ResultStore.from_environment(
        {"EXPLORER_CACHE_DIR": "none", "EXPLORER_CACHE_MB": "4096"}
    )
    assert large.disk_bytes == 4096 * 2**20
    assert large.memory_bytes == 256 * 2**20


def test_environment_defaults(tmp_path):
    store = ResultStore.from_environment({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert store.directory == tmp_path / "xdg" / "curvature-explorer" / "results"
    assert store.directory.is_dir()
    assert store.disk_bytes == 1024 * 2**20
    assert store.memory_bytes == 256 * 2**20

    home = ResultStore.from_environment({"HOME": str(tmp_path / "home")})
    assert (
        home.directory
        == tmp_path / "home" / ".cache" / "curvature-explorer" / "results"
    )


def test_an_unwritable_directory_falls_back_to_memory(tmp_path):
    (tmp_path / "file").write_text("a regular file")
    target = tmp_path / "file" / "sub"
    store = ResultStore.from_environment({"EXPLORER_CACHE_DIR": str(target)})
    assert store.directory is None
    assert store.disk_problem is not None
    assert str(target) in store.disk_problem
    store.put("k", [1])
    assert store.get("k") == [1]
    with pytest.raises(OSError):
        ResultStore(target)  # the constructor itself does not hide the problem


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf", "1e400", "12MB"])
def test_a_bad_cache_size_names_the_variable_and_the_value(value):
    with pytest.raises(ValueError) as caught:
        ResultStore.from_environment(
            {"EXPLORER_CACHE_DIR": "none", "EXPLORER_CACHE_MB": value}
        )
    assert "EXPLORER_CACHE_MB" in str(caught.value)
    assert repr(value) in str(caught.value)


# ------------------------------------------------------------------ threads
def test_two_threads_putting_and_getting_end_consistent(tmp_path):
    size = pickled(blob(0, 10_000))
    store = ResultStore(tmp_path, memory_bytes=5 * size, disk_bytes=8 * size)
    keys = [f"k{i}" for i in range(12)]
    errors: list[BaseException] = []
    wrong: list[str] = []
    start = threading.Barrier(2)

    def work(offset: int) -> None:
        try:
            start.wait()
            for i in range(200):
                key = keys[(i * 7 + offset) % len(keys)]
                fill = int(key[1:])
                if i % 2 == offset % 2:
                    store.put(key, blob(fill, 10_000))
                else:
                    got = store.get(key)
                    if got is not None and got != blob(fill, 10_000):
                        wrong.append(key)
        except BaseException as error:  # re-raised in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert wrong == []

    found = {key: store.get(key) for key in keys}
    assert any(value is not None for value in found.values())
    assert all(v is None or v == blob(int(k[1:]), 10_000) for k, v in found.items())
    on_disk = files(tmp_path)
    assert sum(on_disk.values()) == store.disk_used <= 8 * size
    assert all(size_ == size for size_ in on_disk.values())
    assert store.memory_used == len(store) * size <= 5 * size
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".pkl"]
