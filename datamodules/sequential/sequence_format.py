"""Reading the FedDCSR text format, with errors that name the file, the line and what is wrong.

Layout of one domain directory::

    num_items.txt                 one integer N; item ids are 0..N-1 and N is the padding id
    train_data.txt                user_id<TAB>item<TAB>item...   (time order, one sequence per line)
    valid_data.txt, test_data.txt same layout; the last item is the target
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning_fed.datamodules.sequential.sequence_source import SequenceSource
from lightning_fed.errors import DataFormatError


@dataclass(frozen=True)
class SequenceSplit:
    """One split of one domain: a list of item sequences (each at least 2 items) and their users."""

    users: list[int]
    sequences: list[list[int]]

    def __len__(self) -> int:
        return len(self.sequences)


def read_num_items(source: SequenceSource, domain: str) -> int:
    """Read ``<domain>/num_items.txt``.

    Raises:
        DataFormatError: (a ValueError) if the file is missing or does not hold one positive integer.
    """
    relpath = f"{domain}/num_items.txt"
    where = source.describe(relpath)
    if not source.exists(relpath):
        raise DataFormatError(f"{where}: missing num_items.txt (one integer: the number of items of {domain!r})")
    text = source.read_text(relpath).strip()
    try:
        value = int(text)
    except ValueError:
        raise DataFormatError(f"{where}:1: expected one integer (the number of items), got {text[:40]!r}") from None
    if value <= 0:
        raise DataFormatError(f"{where}:1: the number of items must be positive, got {value}")
    return value


def read_split(source: SequenceSource, domain: str, split: str, num_items: int) -> SequenceSplit:
    """Read ``<domain>/<split>_data.txt`` and validate every line.

    Raises:
        DataFormatError: (a ValueError) naming file and line, for a missing or empty file, a non-integer
            token, an item id outside ``0..num_items-1``, or a line with fewer than 2 items.
    """
    relpath = f"{domain}/{split}_data.txt"
    where = source.describe(relpath)
    if not source.exists(relpath):
        raise DataFormatError(f"{where}: missing {split} split")
    users: list[int] = []
    sequences: list[list[int]] = []
    for line_no, line in enumerate(source.read_text(relpath).splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split("\t") if "\t" in line else line.split()
        try:
            values = [int(tok) for tok in tokens]
        except ValueError:
            bad = next(tok for tok in tokens if not _is_int(tok))
            raise DataFormatError(f"{where}:{line_no}: non-integer token {bad!r}") from None
        user, items = values[0], values[1:]
        if len(items) < 2:
            raise DataFormatError(
                f"{where}:{line_no}: a sequence needs at least 2 items (an input and a target), got {len(items)}"
            )
        for item in items:
            if not 0 <= item < num_items:
                raise DataFormatError(
                    f"{where}:{line_no}: item id {item} is outside 0..{num_items - 1} (num_items.txt says {num_items})"
                )
        users.append(user)
        sequences.append(items)
    if not sequences:
        raise DataFormatError(f"{where}: the {split} split is empty")
    return SequenceSplit(users=users, sequences=sequences)


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True
