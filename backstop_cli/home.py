"""Where the local platform's state lives (its home), found the same way by every command."""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent  # the source tree of an editable install


def state_dir() -> Path:
    """The platform's home: BACKSTOP_HOME, else `.backstop` here, else the `.backstop` of the
    checkout this command was installed from when a platform was started there (so a shell in
    another folder still finds it)."""
    return find_home(os.environ.get("BACKSTOP_HOME"), Path.cwd(), CHECKOUT)


def find_home(given: str | None, cwd: Path, checkout: Path) -> Path:
    """See state_dir: `given` wins; `.backstop` of `cwd` when it exists; else that of `checkout`
    when it holds a platform's state; else `.backstop` of `cwd` (where `up` would start one)."""
    if given:
        return Path(given).resolve()
    here = (cwd / ".backstop").resolve()
    there = checkout / ".backstop"
    if not here.exists() and (checkout / "pyproject.toml").exists() and (there / "platform.json").exists():
        return there
    return here
