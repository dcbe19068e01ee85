"""File arguments of the commands, checked when the command line is parsed.

A command that computes for minutes and then fails to write its ``--out`` loses the
work; one that silently skips a ``--plugin`` that does not exist checks something
else than was asked. So output paths are probed (the folder exists, is a folder, and
takes a new file) and input paths must exist, before any work, with exit code 2 and
a message naming the path.

Use :func:`output_file` / :func:`existing_path` as an argparse ``type=``, or call
:func:`check_writable` (a ValueError, which ``explorer.cli`` turns into exit 2) for
a path that arrives another way, e.g. from a config file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Raises ValueError unless a file can be written at ``path`` now.

    Nothing is left behind: a new file is probed with a temporary one beside it, an
    existing file is opened for appending (its contents untouched).

    Returns:
        ``path`` as a Path (``~`` expanded).
    """
    text = os.fspath(path)
    if not text.strip():
        raise ValueError("an empty path: name a file")
    file = Path(text).expanduser()
    if file.is_dir():
        raise ValueError(f"{text!r} is a folder; name a file in it")
    folder = file.parent
    if not folder.exists():
        raise ValueError(f"cannot write {text!r}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"cannot write {text!r}: {folder} is not a folder")
    try:
        if file.exists():
            with open(file, "a", encoding="utf-8"):
                pass
        else:
            handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"cannot write {text!r} in {folder} ({reason})") from None
    return file


def output_file(text: str) -> str:
    """The argparse ``type=`` of a file the command writes (:func:`check_writable`)."""
    try:
        check_writable(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def existing_path(text: str) -> str:
    """The argparse ``type=`` of a file or folder the command reads (plugins...)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    if not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    return text
