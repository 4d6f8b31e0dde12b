"""Reading raw Amazon interaction dumps into (user, item, timestamp) records, with file:line errors.

Three public formats are read (McAuley et al., https://jmcauley.ucsd.edu/data/amazon/ and
https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/):

- ``ratings``: the 2014 and 2018 "ratings only" CSVs, ``user,item,rating,timestamp`` with no header
  (for example ``ratings_Sports_and_Outdoors.csv``, ``Sports_and_Outdoors.csv``);
- ``reviews``: the 5-core review dumps, one JSON object per line, plain or gzipped, of which only
  ``reviewerID``, ``asin`` and ``unixReviewTime`` are read (``reviews_Video_Games_5.json.gz``,
  ``Video_Games_5.json.gz``);
- ``sequences``: the 5-core sequence text of many sequential-recommendation repositories, one user per line,
  ``user item item ...`` separated by spaces, items in time order. The file has no timestamps, so an item's
  position in its line is its time.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lightning_fed.errors import DataFormatError, MissingDataError
from lightning_fed.text_files import decode_utf8

InputFormat = Literal["auto", "ratings", "reviews", "sequences"]


@dataclass(frozen=True)
class Interaction:
    """One user-item event; ``order`` is its position in the file and breaks ties between equal timestamps."""

    user: str
    item: str
    timestamp: int
    order: int


def detect_format(path: Path) -> Literal["ratings", "reviews", "sequences"]:
    """The format implied by a file name: ``.csv`` ratings, ``.json``/``.json.gz`` reviews, ``.txt`` sequences.

    Raises:
        DataFormatError: for any other suffix (pass the format explicitly then).
    """
    name = path.name.lower()
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "ratings"
    if name.endswith(".json") or name.endswith(".json.gz") or name.endswith(".jsonl"):
        return "reviews"
    if name.endswith(".txt") or name.endswith(".txt.gz"):
        return "sequences"
    raise DataFormatError(
        f"{path}: cannot tell the format from the file name; name it .csv (ratings), .json[.gz] (reviews) or "
        ".txt (sequences), or pass the format explicitly"
    )


def read_interactions(path: str | Path, input_format: InputFormat = "auto") -> list[Interaction]:
    """Read every interaction of one domain's raw file.

    Args:
        path: the raw file (gzip is recognized by its ``.gz`` suffix).
        input_format: ``ratings``, ``reviews``, ``sequences``, or ``auto`` to decide from the file name.

    Raises:
        MissingDataError: the file does not exist.
        DataFormatError: (a ValueError) naming the file and line: a malformed row, a non-numeric or negative
            timestamp, an empty user or item, or a file without any interaction.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file (the raw interactions of one domain)")
    fmt = detect_format(path) if input_format == "auto" else input_format
    parse = {"ratings": _parse_ratings, "reviews": _parse_reviews, "sequences": _parse_sequences}[fmt]
    records: list[Interaction] = []
    for line_no, line in _lines(path):
        if not line.strip():
            continue
        try:
            for user, item, timestamp in parse(line):
                records.append(Interaction(user, item, timestamp, len(records)))
        except _RowError as err:
            raise DataFormatError(f"{path}:{line_no}: {err} ({fmt} format)") from None
    if not records:
        raise DataFormatError(f"{path}: the file holds no interaction ({fmt} format)")
    return records


class _RowError(Exception):
    pass


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                yield line_no, decode_utf8(raw, str(path), line_no)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataFormatError(f"{path}: cannot be read as gzipped text: {err}") from None


def _timestamp(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"non-numeric timestamp {text.strip()[:40]!r}") from None
    if not value >= 0 or value != value or value == float("inf"):
        raise _RowError(f"timestamp must be a non-negative number, got {text.strip()[:40]!r}")
    return int(value)


def _parse_ratings(line: str) -> list[tuple[str, str, int]]:
    fields = line.rstrip("\r\n").split(",")
    if len(fields) != 4:
        raise _RowError(f"expected 4 comma-separated fields user,item,rating,timestamp, got {len(fields)}")
    user, item, rating, timestamp = (field.strip() for field in fields)
    if not user or not item:
        raise _RowError("empty user or item id")
    try:
        float(rating)
    except ValueError:
        raise _RowError(f"non-numeric rating {rating[:40]!r}") from None
    return [(user, item, _timestamp(timestamp))]


def _parse_reviews(line: str) -> list[tuple[str, str, int]]:
    try:
        review = json.loads(line)
    except json.JSONDecodeError as err:
        raise _RowError(f"not a JSON object: {err.msg} at column {err.colno}") from None
    if not isinstance(review, dict):
        raise _RowError(f"expected a JSON object, got {type(review).__name__}")
    missing = [key for key in ("reviewerID", "asin", "unixReviewTime") if key not in review]
    if missing:
        raise _RowError(f"missing field(s) {', '.join(missing)}")
    user, item = str(review["reviewerID"]).strip(), str(review["asin"]).strip()
    if not user or not item:
        raise _RowError("empty reviewerID or asin")
    return [(user, item, _timestamp(str(review["unixReviewTime"])))]


def _parse_sequences(line: str) -> list[tuple[str, str, int]]:
    tokens = line.split()
    if len(tokens) < 2:
        raise _RowError("expected 'user item item ...' with at least one item")
    user, items = tokens[0], tokens[1:]
    return [(user, item, position) for position, item in enumerate(items)]
