"""Reading UTF-8 data files so that a bad byte is reported with its file, line and column."""

from __future__ import annotations

from pathlib import Path

from lightning_fed.errors import DataFormatError


def decode_utf8(data: bytes, where: str, first_line: int = 1) -> str:
    """``data`` decoded as UTF-8.

    Args:
        data: the bytes of a file (or of one of its lines).
        where: the file, as named in the message.
        first_line: the line number of ``data``'s first line.

    Raises:
        DataFormatError: naming ``where``, the line and the column of the first byte that is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataFormatError(
            f"{where}:{line}: byte 0x{data[err.start]:02x} at column {column} is not UTF-8 (save the file as UTF-8)"
        ) from None


def read_utf8(path: str | Path) -> str:
    """The text of ``path``; a byte that is not UTF-8 is a :class:`DataFormatError` with file, line and column."""
    return decode_utf8(Path(path).read_bytes(), str(path))
