"""Statistics of a scenario in the columns of Table 1 of the FMoE-CDSR paper (Liu et al., 2025).

- Users: the size of the user id space, largest id + 1, as Table 1 counts it (the FKCB release has ids that
  never occur in a split; the builder's ids are dense, so there it is also the number of distinct users);
- Items: N, from ``num_items.txt``;
- Train, Valid, Test: number of sequences (lines) per split;
- Avg.Len: items per sequence, averaged over all sequences of the three splits.

On the shipped FKCB files these reproduce every column of Table 1 exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lightning_fed.datamodules.base import SPLITS
from lightning_fed.datamodules.sequential.sequence_format import read_num_items, read_split
from lightning_fed.datamodules.sequential.sequence_source import SequenceSource


@dataclass(frozen=True)
class DomainStatistics:
    """One row of Table 1."""

    domain: str
    users: int
    items: int
    train: int
    valid: int
    test: int
    avg_len: float

    def as_dict(self) -> dict:
        """The row as a JSON-ready dict (``avg_len`` rounded to 4 decimals)."""
        row = asdict(self)
        row["avg_len"] = round(self.avg_len, 4)
        return row


def domain_statistics(source: SequenceSource, domain: str) -> DomainStatistics:
    """Table 1's row for one domain read from ``source`` (the files are validated on the way)."""
    num_items = read_num_items(source, domain)
    splits = {split: read_split(source, domain, split, num_items) for split in SPLITS}
    largest_user = max(max(split.users) for split in splits.values())
    lengths = [len(seq) for split in splits.values() for seq in split.sequences]
    return DomainStatistics(
        domain=domain,
        users=largest_user + 1,
        items=num_items,
        train=len(splits["train"]),
        valid=len(splits["valid"]),
        test=len(splits["test"]),
        avg_len=sum(lengths) / len(lengths),
    )


def statistics_table(rows: list[DomainStatistics]) -> str:
    """The rows as a markdown table with Table 1's columns."""
    lines = ["| Domain | Users | Items | Train | Valid | Test | Avg.Len |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row.domain} | {row.users} | {row.items} | {row.train} | {row.valid} | {row.test} | {row.avg_len:.2f} |"
        )
    return "\n".join(lines) + "\n"
