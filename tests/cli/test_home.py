"""Where the CLI looks for the local platform (BACKSTOP_HOME, here, else the checkout's)."""

from __future__ import annotations

from pathlib import Path

from backstop_cli.home import find_home


def test_the_home_is_given_or_here_or_the_checkouts_running_one(tmp_path: Path) -> None:
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (checkout / ".backstop").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    # nothing started from the checkout: `.backstop` here, where `up` would start one
    assert find_home(None, elsewhere, checkout) == elsewhere / ".backstop"
    (checkout / ".backstop" / "platform.json").write_text("{}")
    assert find_home(None, elsewhere, checkout) == checkout / ".backstop"  # found from another folder
    assert find_home(str(tmp_path / "mine"), elsewhere, checkout) == tmp_path / "mine"
    (elsewhere / ".backstop").mkdir()
    assert find_home(None, elsewhere, checkout) == elsewhere / ".backstop"  # a home here comes first
