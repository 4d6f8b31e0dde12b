"""A DataLoader that slices whole batches out of in-memory tensors."""

from __future__ import annotations

from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


def batch_slicing_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0, drop_last: bool = False
) -> DataLoader:
    """Batches indexed at once (``dataset[list_of_indices]``) instead of collating single rows."""
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last),
        batch_size=None,
        num_workers=num_workers,
    )
