"""Build a non-overlapped cross-domain scenario in the FedDCSR text format from raw Amazon interaction files.

The protocol is the one of FedDCSR and FMoE-CDSR (Liu et al., 2025, Sec. 4.1), each step a parameter whose default
is the papers' value:

1. **k-core filter.** Drop users with fewer than ``min_user_interactions`` (10) and items with fewer than
   ``min_item_interactions`` (10) interactions, repeated until nothing changes (a fixed point: afterwards every
   user and every item meets its threshold). Exact duplicate events (same user, item and timestamp) count once.
2. **Time split.** Each user's history, in time order (ties kept in file order), gives its latest
   ``round(eval_fraction * n)`` interactions (20%) to evaluation and the rest to training. The evaluation part is
   halved in time: the earlier half (rounded down) to validation, the later half to test.
3. **Sequences of ``min_seq_len`` to ``max_seq_len`` items (4 to 16).** Each part is cut into the fewest
   consecutive sequences of at most ``max_seq_len`` items, of (nearly) equal length. A training part shorter than
   ``min_seq_len`` gives no sequence. A validation or test sequence shorter than ``min_seq_len`` is completed with
   the user's directly preceding items as input context (never as target), so evaluation never drops a user;
   the target of an evaluation sequence is its last item, as the FedDCSR format says.
4. **Ids.** Items are re-indexed ``0..N-1`` per domain in the sorted order of their raw ids (``N`` is the padding
   id). Users get per-domain ids ``0..U-1`` in an order drawn from ``seed`` and the domain name, so ids carry no
   information and are never aligned across domains (the non-overlapped setting), even when raw user ids are
   shared across categories, as Amazon's are.

A choice of ours where the papers give only one sentence: steps 2 and 3 (how the 20% is halved and how a
history is cut); the released FKCB files cannot be regenerated from the sentence, so we state ours exactly.

Output, written atomically (nothing is left half-written when anything fails)::

    <output>/<Domain>/{num_items.txt,train_data.txt,valid_data.txt,test_data.txt}
    <output>/statistics.md   Table 1's columns (also printed)
    <output>/build.json      the parameters, the inputs' SHA-256 and the statistics

The same inputs, parameters and seed give byte-identical files. Run it as::

    python -m lightning_fed.datamodules.builder --config configs/build/sgh5core.yaml
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lightning_fed.atomic import current_umask, write_atomically
from lightning_fed.datamodules.builder.amazon_interactions import InputFormat, Interaction, read_interactions
from lightning_fed.datamodules.sequential.amazon import REQUIRED_FILES
from lightning_fed.datamodules.sequential.sequence_source import DirectorySource
from lightning_fed.datamodules.sequential.statistics import DomainStatistics, domain_statistics, statistics_table
from lightning_fed.errors import ConfigurationError, DataFormatError


@dataclass(frozen=True)
class SplitProtocol:
    """The parameters of steps 1 to 3 (see the module docstring); defaults are the papers'."""

    min_user_interactions: int = 10
    min_item_interactions: int = 10
    min_seq_len: int = 4
    max_seq_len: int = 16
    eval_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise ConfigurationError("min_user_interactions and min_item_interactions must be at least 1")
        if not 2 <= self.min_seq_len <= self.max_seq_len:
            raise ConfigurationError(
                f"need 2 <= min_seq_len <= max_seq_len, got min_seq_len={self.min_seq_len}, "
                f"max_seq_len={self.max_seq_len}"
            )
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigurationError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass(frozen=True)
class UserSplit:
    """One user's sequences per split (raw item ids) and how many of its interactions each part holds."""

    train: list[list[str]]
    valid: list[list[str]]
    test: list[list[str]]
    num_train: int
    num_valid: int
    num_test: int


def k_core(interactions: list[Interaction], min_user: int, min_item: int) -> list[Interaction]:
    """Step 1: drop duplicate events, then users and items under their thresholds, until nothing changes."""
    seen: set[tuple[str, str, int]] = set()
    kept = []
    for event in interactions:
        key = (event.user, event.item, event.timestamp)
        if key not in seen:
            seen.add(key)
            kept.append(event)
    while True:
        user_counts = Counter(event.user for event in kept)
        item_counts = Counter(event.item for event in kept)
        filtered = [e for e in kept if user_counts[e.user] >= min_user and item_counts[e.item] >= min_item]
        if len(filtered) == len(kept):
            return kept
        kept = filtered


def balanced_chunks(length: int, max_len: int) -> list[tuple[int, int]]:
    """The fewest consecutive ``(start, stop)`` chunks of ``range(length)`` of at most ``max_len``, near-equal."""
    if length == 0:
        return []
    count = math.ceil(length / max_len)
    base, extra = divmod(length, count)
    chunks, start = [], 0
    for index in range(count):
        stop = start + base + (1 if index < extra else 0)
        chunks.append((start, stop))
        start = stop
    return chunks


def split_history(history: list[str], protocol: SplitProtocol) -> UserSplit:
    """Steps 2 and 3 for one user's time-ordered history."""
    n = len(history)
    num_eval = math.floor(protocol.eval_fraction * n + 0.5)
    num_valid = num_eval // 2
    num_test = num_eval - num_valid
    num_train = n - num_eval
    train = [
        history[start:stop]
        for start, stop in balanced_chunks(num_train, protocol.max_seq_len)
        if stop - start >= protocol.min_seq_len
    ]

    def evaluation(offset: int, length: int) -> list[list[str]]:
        sequences = []
        for start, stop in balanced_chunks(length, protocol.max_seq_len):
            begin = max(0, offset + stop - max(protocol.min_seq_len, stop - start))
            if offset + stop - begin >= protocol.min_seq_len:
                sequences.append(history[begin : offset + stop])
        return sequences

    return UserSplit(
        train=train,
        valid=evaluation(num_train, num_valid),
        test=evaluation(num_train + num_valid, num_test),
        num_train=num_train,
        num_valid=num_valid,
        num_test=num_test,
    )


def _natural_key(raw_id: str) -> tuple[int, int, str]:
    return (0, int(raw_id), "") if raw_id.isdigit() else (1, 0, raw_id)


def _user_order_key(seed: int, domain: str, raw_user: str) -> str:
    return hashlib.sha256(f"{seed}\x00{domain}\x00{raw_user}".encode()).hexdigest()


def build_domain(
    name: str, interactions: list[Interaction], protocol: SplitProtocol, seed: int, source: str
) -> tuple[dict[str, str], dict]:
    """Steps 1 to 4 for one domain.

    Returns:
        The four files' text by file name, and counts for ``build.json``.

    Raises:
        DataFormatError: when the filters leave the domain, or one of its splits, empty.
    """
    filtered = k_core(interactions, protocol.min_user_interactions, protocol.min_item_interactions)
    if not filtered:
        users = len({e.user for e in interactions})
        items = len({e.item for e in interactions})
        raise DataFormatError(
            f"{source}: domain {name!r} is empty after the k-core filter (users >= "
            f"{protocol.min_user_interactions} and items >= {protocol.min_item_interactions} interactions, repeated "
            f"until nothing changes; the file has {len(interactions)} interactions of {users} users and {items} "
            "items). Lower --min_user_interactions/--min_item_interactions or use a larger dump."
        )
    histories: dict[str, list[Interaction]] = {}
    for event in filtered:
        histories.setdefault(event.user, []).append(event)
    splits = {}
    for user, events in histories.items():
        events.sort(key=lambda e: (e.timestamp, e.order))
        split = split_history([e.item for e in events], protocol)
        if split.train or split.valid or split.test:
            splits[user] = split

    items = sorted({e.item for e in filtered}, key=_natural_key)
    item_index = {item: index for index, item in enumerate(items)}
    users = sorted(splits, key=lambda user: _user_order_key(seed, name, user))
    files = {"num_items.txt": f"{len(items)}\n"}
    for split_name in ("train", "valid", "test"):
        lines = [
            "\t".join([str(user_id), *(str(item_index[item]) for item in sequence)])
            for user_id, user in enumerate(users)
            for sequence in getattr(splits[user], split_name)
        ]
        if not lines:
            raise DataFormatError(
                f"{source}: domain {name!r} has no {split_name} sequence after the filters and the split "
                f"(sequences of {protocol.min_seq_len} to {protocol.max_seq_len} items); it needs users with longer "
                "histories"
            )
        files[f"{split_name}_data.txt"] = "\n".join(lines) + "\n"
    train_items = {item for split in splits.values() for seq in split.train for item in seq}
    counts = {
        "interactions_read": len(interactions),
        "interactions_kept": len(filtered),
        "users_kept": len(histories),
        "interactions_train": sum(s.num_train for s in splits.values()),
        "interactions_valid": sum(s.num_valid for s in splits.values()),
        "interactions_test": sum(s.num_test for s in splits.values()),
        "valid_targets_unseen_in_train": sum(seq[-1] not in train_items for s in splits.values() for seq in s.valid),
        "test_targets_unseen_in_train": sum(seq[-1] not in train_items for s in splits.values() for seq in s.test),
    }
    return files, counts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def build_scenario(
    domains: dict[str, str],
    output: str,
    input_format: InputFormat = "auto",
    min_user_interactions: int = 10,
    min_item_interactions: int = 10,
    min_seq_len: int = 4,
    max_seq_len: int = 16,
    eval_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    archive: str | None = None,
) -> list[DomainStatistics]:
    """Build a cross-domain scenario from one raw Amazon file per domain (see the module docstring).

    Args:
        domains: domain name -> raw file (``.csv`` ratings, ``.json[.gz]`` reviews or ``.txt`` sequences); the
            names become the scenario's directories, in this order.
        output: directory to create (``<output>/<Domain>/*.txt``, ``statistics.md``, ``build.json``).
        input_format: the raw files' format, or ``auto`` to decide from each file name.
        min_user_interactions: step 1, users with fewer interactions are dropped (papers: 10).
        min_item_interactions: step 1, items with fewer interactions are dropped (papers: 10).
        min_seq_len: step 3, shortest sequence (papers: 4).
        max_seq_len: step 3, longest sequence (papers: 16).
        eval_fraction: step 2, the latest fraction of each user's interactions for validation and test (papers: 0.2).
        seed: step 4, the seed of the per-domain user ids.
        overwrite: replace ``output`` when it exists (only once the new scenario is complete).
        archive: also write the scenario as a reproducible ``.tar.gz`` (the shipped-archive layout).

    Returns:
        The statistics rows, in the order of ``domains``.
    """
    protocol = SplitProtocol(min_user_interactions, min_item_interactions, min_seq_len, max_seq_len, eval_fraction)
    if not domains:
        raise ConfigurationError("domains: give at least one 'name: raw file' pair")
    for name in domains:
        if not _DOMAIN_NAME.match(name):
            raise ConfigurationError(f"domains: {name!r} is not a usable directory name (letters, digits, _ . -)")
    out = Path(output).expanduser()
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ConfigurationError(f"output: {out} already exists; pass --overwrite true to replace it")
        check_replaceable(out)

    built: dict[str, dict[str, str]] = {}
    inputs, counts = {}, {}
    for name, raw in domains.items():
        path = Path(raw).expanduser()
        built[name], counts[name] = build_domain(
            name, read_interactions(path, input_format), protocol, seed, source=str(path)
        )
        inputs[name] = {"file": path.name, "sha256": _sha256(path)}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        staging.chmod(0o777 & ~current_umask())
        for name, files in built.items():
            (staging / name).mkdir()
            for file_name, text in files.items():
                (staging / name / file_name).write_text(text, encoding="utf-8", newline="\n")
        source = DirectorySource(staging)
        rows = [domain_statistics(source, name) for name in domains]
        table = statistics_table(rows)
        (staging / "statistics.md").write_text(table, encoding="utf-8", newline="\n")
        report = {
            "protocol": {**protocol.__dict__, "seed": seed},
            "inputs": inputs,
            "statistics": [row.as_dict() for row in rows],
            "counts": counts,
        }
        (staging / "build.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8", newline="\n")
        if archive is not None:
            write_archive(staging, Path(archive).expanduser())
        _replace_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"Scenario written to {out}\n\n{table}")
    return rows


def check_replaceable(out: Path) -> None:
    """Refuse to replace anything but a scenario this builder wrote, holding nothing the builder did not write.

    Raises:
        ConfigurationError: naming ``out`` and why it is kept; nothing is changed.
    """
    keep = "; it was left as it is (choose another --output, or remove it yourself)"
    if out.is_symlink() or not out.is_dir():
        kind = "a symbolic link" if out.is_symlink() else "a file"
        raise ConfigurationError(f"output: {out} is {kind}, not a scenario built by this builder{keep}")
    try:
        report = json.loads((out / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict) or not {"protocol", "inputs", "statistics"} <= set(report):
        raise ConfigurationError(
            f"output: {out} is not a scenario built by this builder (no build.json of the builder in it){keep}"
        )
    domains = set(report["inputs"])
    allowed = {"build.json", "statistics.md", *domains}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed)
    for domain in sorted(domains & {p.name for p in out.iterdir()}):
        foreign += [f"{domain}/{p.name}" for p in sorted((out / domain).iterdir()) if p.name not in REQUIRED_FILES]
    if foreign:
        raise ConfigurationError(
            f"output: {out} holds files the builder did not write ({', '.join(foreign[:3])}){keep}"
        )


def _replace_directory(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)
        return
    retired = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    os.replace(out, retired)
    os.replace(staging, out)
    shutil.rmtree(retired, ignore_errors=True)


def write_archive(directory: Path, archive: Path) -> None:
    """Write ``directory``'s files as a ``.tar.gz`` whose bytes depend only on the files' names and contents.

    Members are sorted, with mtime 0, owner 0 and mode 0644, and the gzip header carries no time stamp; the
    archive is written to a temporary file and renamed into place.
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                data = path.read_bytes()
                info = tarfile.TarInfo(path.relative_to(directory).as_posix())
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    write_atomically(archive, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def main(args: list[str] | None = None) -> None:
    """Command line: ``python -m lightning_fed.datamodules.builder --help``."""
    from jsonargparse import auto_cli

    from lightning_fed.errors import UserInputError, exit_with_error

    try:
        auto_cli(build_scenario, args=args, as_positional=False, prog="python -m lightning_fed.datamodules.builder")
    except UserInputError as err:
        exit_with_error(str(err))


if __name__ == "__main__":
    main()
