"""The CPython interpreters installed on this machine, pyenv's and Debian's (for tests
that run the project under other versions than their own)."""

from __future__ import annotations

import glob
import os


def installed(version: str) -> list[str]:
    """pyenv's (under ``PYENV_ROOT``, else ``~/.pyenv``) and Debian's CPython whose
    version matches the glob ``version`` ("3.11", "3.1[1-9]"), sorted by path."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return sorted(
        glob.glob(os.path.join(root, "versions", f"{version}*", "bin", "python3"))
        + glob.glob(f"/usr/bin/python{version}")
    )
