"""The contract subject of the configs component (see tests/contract/conftest.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unique

GKE_LOCATION = "us-central1"
COMPOSER_PARENT = "projects/backstop-demo/locations/europe-west1"


class ConfigsSubject:
    """A local directory; an exact restore's scope is the files the source's patterns select
    (secret-looking files and excluded ones are never in it)."""

    component = "configs"
    # a name `only` takes that the seeded backup does not hold (a file pattern)
    absent_part = "nothing-here/*.yaml"
    scope_options: dict[str, Any] | None = None
    subset_options: dict[str, Any] | None = None  # it takes no backup of part of a source

    def __init__(self, settings: Any, root: Path) -> None:
        self.settings, self.root = settings, root

    def seed(self) -> str:
        from blocks.components import ConfigSource

        name = unique("cfg")
        path = self.root / name
        (path / "pipelines").mkdir(parents=True)
        (path / "pipelines" / "orders.yaml").write_text("name: orders\nschedule: daily\n")
        (path / "dags").mkdir()
        (path / "dags" / "etl.py").write_text("print('etl')\n")
        (path / "main.tf").write_text('resource "x" "y" {}\n')
        self.settings.configs.sources.append(ConfigSource(name=name, path=str(path)))
        return name

    def _path(self, where: str) -> Path:
        known = {s.name: s.path for s in self.settings.configs.sources}
        return Path(known.get(where, where))

    def state(self, where: str) -> Any:
        root = self._path(where)
        return {
            str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    def change(self, source: str) -> None:
        (self._path(source) / "main.tf").write_text("changed after the backup\n")

    def change_one_kind(self, source: str) -> None:
        """The mode only, not the content."""
        path = self._path(source) / "main.tf"
        path.chmod(0o600 if path.stat().st_mode & 0o777 != 0o600 else 0o640)

    def add_in_scope(self, source: str) -> None:
        (self._path(source) / "pipelines" / "added.yaml").write_text("name: added\n")

    def add_outside_scope(self, source: str) -> None:
        (self._path(source) / ".env").write_text("TOKEN=left out as a secret\n")
        (self._path(source) / ".git").mkdir(exist_ok=True)
        (self._path(source) / ".git" / "HEAD").write_text("excluded by the source's patterns\n")

    def new_target(self, source: str) -> str:
        return str(self.root / unique("restored"))

    def gone(self, target: str) -> bool:
        return not Path(target).exists()


def make(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[ConfigsSubject]:
    with tempfile.TemporaryDirectory(prefix="backstop-contract-") as root:
        yield ConfigsSubject(settings, Path(root))
