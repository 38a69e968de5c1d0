"""What a benchmark is given: the scale, the databases to run on, and a scratch folder."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import data

logger = logging.getLogger("bench")

BACKENDS = ("sqlite", "postgresql")


@dataclass
class Context:
    scale: data.Scale
    backends: tuple[str, ...]
    workdir: Path
    _datasets: dict[str, str] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.scale.name != data.FULL.name

    def dataset(self, backend: str) -> str:
        """The URL of the shared, read-only dataset on ``backend`` (built on first use, then cached)."""
        if backend not in self._datasets:
            build = data.sqlite_dataset if backend == "sqlite" else data.postgres_dataset
            self._datasets[backend] = build(self.scale)
        return self._datasets[backend]

    @contextlib.contextmanager
    def scratch(self, backend: str) -> Iterator[str]:
        """An empty migrated database on ``backend``, removed afterwards."""
        with data.scratch_database(backend, self.workdir) as url:
            yield url

    def log(self, message: str, *args: object) -> None:
        logger.info(message, *args)
