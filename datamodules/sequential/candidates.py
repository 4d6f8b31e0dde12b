"""The sampled-ranking candidates of the papers' protocol, drawn once and cached.

For every validation/test sequence, ``num_negatives`` items are drawn uniformly without replacement from the
domain's items other than the target. The draw uses NumPy's PCG64 seeded from (seed, domain, split), so the
candidates are identical across models, runs and machines; they are cached on disk under a key that includes
the split's content, so a changed file never reuses stale candidates.

:func:`reference_negatives` is the authors' draw instead (docs/specs/fmoe-cdsr.md, reference point 9): one legacy
NumPy stream seeded once, every domain in scenario order, valid then test, draws with replacement.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from lightning_fed.errors import DataFormatError


def default_cache_dir() -> Path:
    """``$LIGHTNING_FED_CACHE`` or ``$XDG_CACHE_HOME/lightning_fed`` (``~/.cache/lightning_fed``)."""
    if "LIGHTNING_FED_CACHE" in os.environ:
        return Path(os.environ["LIGHTNING_FED_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "lightning_fed"


def draw_negatives(
    targets: np.ndarray, num_items: int, num_negatives: int, seed: int, domain: str, split: str
) -> np.ndarray:
    """Draw ``num_negatives`` distinct items != target for every target.

    Args:
        targets: (M,) target item ids in ``0..num_items-1``.
        num_items: the domain's number of items N.
        num_negatives: negatives per target (999 in the papers); at most N - 1.
        seed: the protocol seed.
        domain: domain name (enters the seed, so domains get independent draws).
        split: ``"valid"`` or ``"test"`` (enters the seed).

    Returns:
        (M, num_negatives) int64 array.
    """
    if num_negatives > num_items - 1:
        raise DataFormatError(
            f"{domain}: cannot draw {num_negatives} distinct negatives from {num_items - 1} non-target items"
        )
    seed_seq = np.random.SeedSequence([seed, zlib.crc32(domain.encode()), zlib.crc32(split.encode())])
    rng = np.random.Generator(np.random.PCG64(seed_seq))
    out = np.empty((len(targets), num_negatives), dtype=np.int64)
    for row, target in enumerate(targets):
        draw = rng.choice(num_items - 1, size=num_negatives, replace=False)
        out[row] = draw + (draw >= target)  # skip the target: values >= target move up by one
    return out


def cached_negatives(
    targets: np.ndarray,
    num_items: int,
    num_negatives: int,
    seed: int,
    domain: str,
    split: str,
    content_key: str,
    cache_dir: Path | None,
) -> np.ndarray:
    """:func:`draw_negatives`, read from / written to ``cache_dir`` (no caching when ``cache_dir`` is None).

    A cache file holds the negatives and the SHA-256 of their bytes. A file that cannot be read, has the wrong
    shape or fails its checksum (a damaged disk, an interrupted copy) is drawn again and replaced, with a
    warning: the draw is deterministic, so the candidates stay the same.
    """
    if cache_dir is None:
        return draw_negatives(targets, num_items, num_negatives, seed, domain, split)
    digest = hashlib.sha256(f"{content_key}|{num_items}|{targets.tobytes().hex()}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / "candidates" / f"{domain}-{split}-neg{num_negatives}-seed{seed}-{digest}.npz"
    if path.is_file():
        negatives, problem = _read_cached(path, (len(targets), num_negatives))
        if negatives is not None:
            return negatives
        warnings.warn(f"candidate cache {path} is damaged ({problem}); drawing the candidates again", stacklevel=2)
    negatives = draw_negatives(targets, num_items, num_negatives, seed, domain, split)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
        np.savez(tmp, negatives=negatives, sha256=np.frombuffer(_checksum(negatives), dtype=np.uint8))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-draw, which gives the same candidates
    return negatives


def _checksum(negatives: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(negatives, dtype=np.int64).tobytes()).digest()


def _read_cached(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The cached negatives, or None and what is wrong with the file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            negatives, checksum = archive["negatives"], archive["sha256"].tobytes()
    except Exception as err:  # noqa: BLE001 - a damaged zip/npy raises many types
        return None, f"unreadable: {type(err).__name__}"
    if negatives.shape != shape or negatives.dtype != np.int64:
        return None, f"shape {negatives.shape} instead of {shape}"
    if checksum != _checksum(negatives):
        return None, "checksum mismatch"
    return negatives, ""


def reference_negatives(
    targets: list[tuple[str, str, np.ndarray, int]], num_negatives: int, seed: int = 42
) -> dict[tuple[str, str], np.ndarray]:
    """The reference code's candidates, drawn from one NumPy stream through every (domain, split) in order.

    ``np.random.seed(seed)`` once, then for every (domain, split) in the given order (the scenario's domains,
    valid then test), for every sequence, ``num_negatives`` draws of ``np.random.randint(0, N)``, with
    replacement, a draw equal to the target drawn again at once.

    The draws come from a private ``RandomState(seed)`` (the global NumPy state is left alone); an array draw
    of k values consumes the same stream as k scalar draws, so the accepted values are drawn k at a time: they
    are the stream with the target's occurrences removed.

    Args:
        targets: ``(domain, split, targets, num_items)`` in draw order.
        num_negatives: negatives per target (999).
        seed: the global seed of the reference code (42).

    Returns:
        ``{(domain, split): (M, num_negatives) int64 array}``.
    """
    rng = np.random.RandomState(seed)
    out = {}
    for domain, split, split_targets, num_items in targets:
        if num_items < 2:
            raise DataFormatError(f"{domain}: cannot draw negatives other than the target from {num_items} item(s)")
        negatives = np.empty((len(split_targets), num_negatives), dtype=np.int64)
        for row, target in enumerate(split_targets):
            # the accepted values are the stream without the target's occurrences; never draw past the last one
            filled = 0
            while filled < num_negatives:
                draw = rng.randint(0, num_items, size=num_negatives - filled)
                accepted = draw[draw != target]
                negatives[row, filled : filled + len(accepted)] = accepted
                filled += len(accepted)
        out[(domain, split)] = negatives
    return out
