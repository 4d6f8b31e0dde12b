"""Where a scenario's files come from: a directory on disk or an archive shipped inside the package."""

from __future__ import annotations

import tarfile
from abc import ABC, abstractmethod
from functools import cached_property
from importlib import resources
from pathlib import Path

from lightning_fed.text_files import decode_utf8, read_utf8


class SequenceSource(ABC):
    """Read-only access to the files of a scenario laid out as ``<domain>/<file>``."""

    @abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether ``relpath`` (for example ``"Food/train_data.txt"``) is present."""

    @abstractmethod
    def read_text(self, relpath: str) -> str:
        """The UTF-8 text of ``relpath``."""

    @abstractmethod
    def describe(self, relpath: str) -> str:
        """A human-readable location of ``relpath`` for error messages."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the source's files may have changed (used in cache keys)."""


class DirectorySource(SequenceSource):
    """Files under a directory ``root/<domain>/<file>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def exists(self, relpath: str) -> bool:  # noqa: D102
        return (self.root / relpath).is_file()

    def read_text(self, relpath: str) -> str:  # noqa: D102
        return read_utf8(self.root / relpath)

    def describe(self, relpath: str) -> str:  # noqa: D102
        return str(self.root / relpath)

    def fingerprint(self) -> str:  # noqa: D102
        return str(self.root.resolve())


class ArchiveSource(SequenceSource):
    """Files inside a ``.tar.gz`` archive whose members are ``<domain>/<file>``."""

    def __init__(self, archive: str | Path) -> None:
        self.archive = Path(archive)

    @cached_property
    def _members(self) -> dict[str, bytes]:
        with tarfile.open(self.archive, "r:gz") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

    def exists(self, relpath: str) -> bool:  # noqa: D102
        return relpath in self._members

    def read_text(self, relpath: str) -> str:  # noqa: D102
        return decode_utf8(self._members[relpath], self.describe(relpath))

    def describe(self, relpath: str) -> str:  # noqa: D102
        return f"{self.archive}!/{relpath}"

    def fingerprint(self) -> str:  # noqa: D102
        return f"{self.archive.name}:{self.archive.stat().st_size}"


def embedded_archive(name: str) -> Path:
    """Path of an archive shipped in ``lightning_fed/datamodules/embedded`` (for example ``"fkcb"``)."""
    path = resources.files("lightning_fed.datamodules") / "embedded" / f"{name}.tar.gz"
    return Path(str(path))
