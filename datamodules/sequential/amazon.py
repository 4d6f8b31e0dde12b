"""Amazon cross-domain scenarios (FKCB, MBG, SGH, SGH5Core) and any other set of domains in the same format.

A client holds one domain: one :class:`SequenceDataModule` per domain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning_fed.datamodules.base import ScenarioDataModule
from lightning_fed.datamodules.sequential.sequence_datamodule import SequenceDataModule
from lightning_fed.datamodules.sequential.sequence_source import (
    ArchiveSource,
    DirectorySource,
    SequenceSource,
    embedded_archive,
)
from lightning_fed.errors import MissingDataError, check_integer

REQUIRED_FILES = ("num_items.txt", "train_data.txt", "valid_data.txt", "test_data.txt")
AUTHORS_DRIVE_FOLDER = "1NnZN3LhzdpxwaHiOW8GAUS8noTbdLlQt"
AUTHORS_RELEASE = (
    "the FedDCSR/FMoE-CDSR authors' release on Google Drive "
    f"(folder id {AUTHORS_DRIVE_FOLDER}, linked from github.com/TimiBlueGPT/FedDCSR)"
)
BUILDER_COMMAND = "python -m lightning_fed.datamodules.builder"


class CrossDomainScenario(ScenarioDataModule):
    """A scenario of non-overlapped domains in the FedDCSR text format; each domain becomes one client.

    The scenario itself serves no batches: a federation asks it for :meth:`client_datamodules`, and each client
    trains on its own domain only.
    """

    #: Arguments that may differ from the trained federation's when it is tested or validated again.
    reconfigurable_arguments: tuple[str, ...] = ("root", "eval_batch_size", "num_workers", "cache_dir")
    #: Shipped archive used when ``root`` is None (None: the data must be given).
    embedded: str | None = None
    #: Where to get the data, for the error message when it is missing.
    download_hint: str = AUTHORS_RELEASE
    #: Google Drive folder that ``prepare_data`` downloads with gdown when the data is missing (None: never).
    drive_folder: str | None = None
    #: Raw Amazon categories of each domain, for the builder alternative in the error message.
    raw_categories: dict[str, str] | None = None
    client_noun = "domain"
    whole_noun = "scenario"

    def __init__(
        self,
        domains: list[str],
        root: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        max_seq_len: int = 16,
        num_negatives: int = 999,
        candidate_seed: int = 0,
        max_sequences: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        training_order: Literal["reshuffle", "fixed"] = "reshuffle",
        candidate_draws: Literal["independent", "reference"] = "independent",
        model_defaults: dict[str, float] | None = None,
    ) -> None:
        """Describe the scenario.

        Args:
            domains: domain directory names; their order fixes the expert order inside every client.
            root: directory holding ``<domain>/{num_items.txt,train_data.txt,valid_data.txt,test_data.txt}``;
                None uses the archive shipped with the package, where the scenario has one.
            batch_size: training batch size.
            eval_batch_size: validation/test batch size.
            max_seq_len: T, the input length.
            num_negatives: sampled negatives per evaluation sequence.
            candidate_seed: seed of the negatives (fixed, so every model sees the same candidates).
            max_sequences: keep only the first n lines of each split of each domain.
            num_workers: DataLoader workers per client.
            cache_dir: candidate cache directory.
            training_order: ``"reshuffle"`` every epoch, or ``"fixed"``: the reference code's order and views
                (see :class:`~lightning_fed.datamodules.sequential.sequence_datamodule.SequenceDataModule`).
            candidate_draws: ``"independent"`` (the papers' protocol, per domain and split) or ``"reference"``:
                the reference code's one NumPy stream through the domains in order (use ``candidate_seed: 42``).
            model_defaults: the scenario's values of model arguments left None, by argument name: the baselines'
                KL ``anneal_cap`` and FedDCSR's ``similarity_weight`` (beta) and ``exclusive_contrastive_weight``
                (lambda). ``configs/data/*.yaml`` set the papers' values per scenario.
        """
        super().__init__(domains, "data.init_args.domains")
        self.check_loader_arguments(batch_size, eval_batch_size, num_workers)
        for option, value in (("max_seq_len", max_seq_len), ("num_negatives", num_negatives)):
            check_integer(f"data.init_args.{option}", value)
        if max_sequences is not None:
            check_integer("data.init_args.max_sequences", max_sequences, 1)
        self.domains = list(domains)
        self.root = root
        self._client_source: SequenceSource | None = None
        self.datamodule_kwargs = dict(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            max_seq_len=max_seq_len,
            num_negatives=num_negatives,
            candidate_seed=candidate_seed,
            max_sequences=max_sequences,
            num_workers=num_workers,
            cache_dir=cache_dir,
            training_order=training_order,
            candidate_draws=candidate_draws,
            model_defaults=model_defaults,
        )

    def source(self) -> SequenceSource:
        """The directory (``root``) or the shipped archive the files are read from."""
        if self.root is not None:
            return DirectorySource(self.root)
        if self.embedded is None:
            raise MissingDataError(self._missing_message(None, []))
        return ArchiveSource(embedded_archive(self.embedded))

    def prepare_data(self) -> None:
        """Check that every domain's four files exist; fail at once with the expected layout otherwise.

        A scenario with a ``drive_folder`` (MBG, SGH) first tries to download the authors' release into ``root``
        with gdown, when gdown is installed and Google Drive is reachable.
        """
        if self.root is None and self.embedded is not None:
            return
        missing = self._missing_files()
        if missing and self.drive_folder is not None and self.root is not None:
            download_failure = self._download_release()
            missing = self._missing_files()
            if missing:
                raise MissingDataError(self._missing_message(self.root, missing, download_failure))
        if missing:
            raise MissingDataError(self._missing_message(self.root, missing))

    def _missing_files(self, domains: list[str] | None = None) -> list[str]:
        source = self.source()
        return [f"{d}/{f}" for d in domains or self.domains for f in REQUIRED_FILES if not source.exists(f"{d}/{f}")]

    def _download_release(self) -> str:
        """Download ``drive_folder`` into ``root`` with gdown; returns why it did not give the layout ('' if it did).

        The release may nest the domains one or more levels down; the first directory under ``root`` holding all
        of them becomes the root.
        """
        try:
            import gdown
        except ImportError:
            return "gdown is not installed (pip install gdown), so the release was not downloaded"
        root = Path(self.root).expanduser()
        try:
            gdown.download_folder(id=self.drive_folder, output=str(root), quiet=False)
        except Exception as err:  # noqa: BLE001 - gdown raises many types (network, quota, HTML); all mean "not here"
            return f"downloading Drive folder {self.drive_folder} with gdown failed: {type(err).__name__}: {err}"
        for candidate in sorted(p.parent.parent for p in root.rglob(f"{self.domains[0]}/num_items.txt")):
            if all((candidate / d / f).is_file() for d in self.domains for f in REQUIRED_FILES):
                self.root = str(candidate)
                self.forget_clients()
                return ""
        return f"the downloaded release under {root} does not have the layout below"

    def _missing_message(
        self, root: str | None, missing: list[str], download_failure: str = "", domains: list[str] | None = None
    ) -> str:
        domains = domains or self.domains
        where = f"under {Path(root).expanduser().resolve()}" if root else "(no data root was given)"
        layout = "\n".join(f"    {d}/{{{','.join(REQUIRED_FILES)}}}" for d in domains)
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        message = (
            f"{type(self).__name__}: the data is missing {where}"
            + (f": {shown}" if missing else "")
            + (f"\n({download_failure})" if download_failure else "")
            + f".\nExpected layout (FedDCSR text format):\n  <root>/\n{layout}\n"
            f"Get it from {self.download_hint}, unpack it so that the layout above holds, and pass the "
            f"directory as --data.init_args.root."
        )
        if self.raw_categories:
            pairs = ", ".join(f"{d}: <{c} ratings .csv or 5-core .json.gz>" for d, c in self.raw_categories.items())
            message += (
                "\nOr build it from the public Amazon review dumps (jmcauley.ucsd.edu/data/amazon) with the papers' "
                f"protocol:\n  {BUILDER_COMMAND} --domains '{{{pairs}}}' --output {root or '<root>'}"
            )
        return message

    def configure_client(self, name: str) -> SequenceDataModule:
        """The datamodule of domain ``name``; the scenario's domain order fixes every client's expert order."""
        if self._client_source is None:  # one source for all clients: an archive is decompressed once
            self._client_source = self.source()
        return SequenceDataModule(self._client_source, name, scenario_domains=self.domains, **self.datamodule_kwargs)

    def forget_clients(self) -> None:  # noqa: D102
        super().forget_clients()
        self._client_source = None

    def prepare_client_data(self, name: str) -> None:
        """Check that domain ``name``'s four files exist (the other domains' are not needed on its machine).

        With ``candidate_draws: reference`` every domain's validation and test targets take part in the draws, so
        every domain's files are checked.
        """
        if self.datamodule_kwargs["candidate_draws"] == "reference":
            self.prepare_data()
            return
        if self.root is None and self.embedded is not None:
            return
        missing = self._missing_files([name])
        if missing:
            raise MissingDataError(self._missing_message(self.root, missing, domains=[name]))


class FKCB(CrossDomainScenario):
    """Amazon Food-Kitchen-Clothing-Beauty, the exact splits of FedDCSR and FMoE-CDSR (shipped in the package).

    The splits released with FedDCSR (Zhang et al., SDM 2024), byte for byte; their statistics are those of
    Table 1 of Liu et al., "Federated Mixture-of-Expert for Non-Overlapped Cross-Domain Sequential
    Recommendation" (2025).
    """

    embedded = "fkcb"

    def __init__(self, domains: list[str] | None = None, root: str | None = None, **kwargs) -> None:
        """FKCB with the four domains by default; ``root`` overrides the shipped copy (see the base class)."""
        super().__init__(domains or ["Food", "Kitchen", "Clothing", "Beauty"], root=root, **kwargs)


class MBG(CrossDomainScenario):
    """Amazon Movie-Book-Game (FedDCSR/FMoE-CDSR). Not shipped: downloaded with gdown, or given as ``root``."""

    drive_folder = AUTHORS_DRIVE_FOLDER
    raw_categories = {"Movie": "Movies_and_TV", "Book": "Books", "Game": "Video_Games"}

    def __init__(self, domains: list[str] | None = None, root: str | None = "data/mbg", **kwargs) -> None:
        """MBG from ``root`` (default ``data/mbg``); see the base class for the other arguments."""
        super().__init__(domains or ["Movie", "Book", "Game"], root=root, **kwargs)


class SGH(CrossDomainScenario):
    """Amazon Sport-Garden-Home (FedDCSR/FMoE-CDSR). Not shipped: downloaded with gdown, or given as ``root``."""

    drive_folder = AUTHORS_DRIVE_FOLDER
    raw_categories = {"Sport": "Sports_and_Outdoors", "Garden": "Patio_Lawn_and_Garden", "Home": "Home_and_Kitchen"}

    def __init__(self, domains: list[str] | None = None, root: str | None = "data/sgh", **kwargs) -> None:
        """SGH from ``root`` (default ``data/sgh``); see the base class for the other arguments."""
        super().__init__(domains or ["Sport", "Garden", "Home"], root=root, **kwargs)


class SGH5Core(CrossDomainScenario):
    """Sports-Games-Home built from the Amazon 2014 5-core sequence files (shipped in the package).

    Built by :mod:`lightning_fed.datamodules.builder.scenario_builder` from ``Sports_and_Outdoors.txt``,
    ``Video_Games.txt`` and ``Home_and_Kitchen.txt``, the Amazon 2014 5-core sequence files (McAuley et al.,
    SIGIR 2015), with ``configs/build/sgh5core.yaml``: the papers'
    protocol with items kept from 5 interactions instead of 10, because those files are 5-core subsets. Not the
    papers' SGH (Sport-Garden-Home, from the full dumps): a second real scenario of the same kind.
    """

    embedded = "sgh5core"

    def __init__(self, domains: list[str] | None = None, root: str | None = None, **kwargs) -> None:
        """SGH-5core with its three domains by default; ``root`` overrides the shipped copy (see the base class)."""
        super().__init__(domains or ["Sports", "Games", "Home"], root=root, **kwargs)
