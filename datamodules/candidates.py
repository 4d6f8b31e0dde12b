"""The sampled-ranking candidates of the papers' protocol, drawn once and cached.

For every validation/test sequence, ``num_negatives`` items are drawn uniformly without replacement from the
domain's items other than the target. The draw uses NumPy's PCG64 seeded from (seed, domain, split), so the
candidates are identical across models, runs and machines; they are cached on disk under a key that includes
the split's content, so a changed file never reuses stale candidates.
"""

from __future__ import annotations

import hashlib
import os
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
    """:func:`draw_negatives`, read from / written to ``cache_dir`` (no caching when ``cache_dir`` is None)."""
    if cache_dir is None:
        return draw_negatives(targets, num_items, num_negatives, seed, domain, split)
    digest = hashlib.sha256(f"{content_key}|{num_items}|{targets.tobytes().hex()}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / "candidates" / f"{domain}-{split}-neg{num_negatives}-seed{seed}-{digest}.npy"
    if path.is_file():
        negatives = np.load(path)
        if negatives.shape == (len(targets), num_negatives):
            return negatives
    negatives = draw_negatives(targets, num_items, num_negatives, seed, domain, split)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, negatives)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-draw, which gives the same candidates
    return negatives
