"""The words of a command line, read before any parser is built: the global `--settings NAME` left
out, the verb, and the verb with its component (what a log may name of a command)."""

from __future__ import annotations

from collections.abc import Sequence


def without_settings(argv: Sequence[str]) -> list[str]:
    """`argv` without the global `--settings NAME` (its value is no verb)."""
    words, tokens = [], iter(argv)
    for token in tokens:
        if token == "--settings":
            next(tokens, None)
        else:
            words.append(token)
    return words


def verb(argv: Sequence[str]) -> str | None:
    """The command's verb: the first word that is neither an option nor the value of --settings."""
    return next((w for w in without_settings(argv) if not w.startswith("-")), None)


def verb_and_component(argv: Sequence[str]) -> str:
    """'restore gcs', 'list': the words before the first option that follows the verb (the values
    of options may name what a log should not show)."""
    named: list[str] = []
    for word in without_settings(argv):
        if word.startswith("-"):
            if named:
                break
        elif len(named) < 2:
            named.append(word)
    return " ".join(named)
