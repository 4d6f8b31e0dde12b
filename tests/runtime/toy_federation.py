"""A toy FederatedModule and a toy two-client scenario: the runtime's contract without a recommender."""

import torch
import torch.nn.functional as F
from lightning import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_fed.strategies.base import GLOBAL


class ToyClient(LightningModule):
    """One linear weight, shared by FedAvg. Validation reports ``scores[r - 1]`` in round r (planted)."""

    monitor = "score"

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = list(scores)
        self.layer = nn.Linear(2, 1)
        self.register_buffer("validations", torch.zeros((), dtype=torch.long))

    @property
    def receives(self) -> frozenset[str]:
        return frozenset({"average", "nothing"})

    @property
    def validation_metrics(self) -> tuple[str, ...]:
        return ("score",)

    def build(self, datamodule) -> None:
        pass

    def shared_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.layer.state_dict().items()}

    def load_shared_state(self, payload) -> None:
        if GLOBAL in payload:
            self.layer.load_state_dict(payload[GLOBAL])

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/score", self.scores[min(int(self.validations), len(self.scores) - 1)])
        self.validations += 1

    def test_step(self, batch, batch_idx) -> None:
        pass

    def on_test_epoch_end(self) -> None:
        # the weight the client tests with: tells which round's state was restored
        self.log("test/weight_sum", self.layer.weight.sum().item())


class ToyData(LightningDataModule):
    def __init__(self, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(8, 2, generator=generator)
        self.dataset = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=4)

    def val_dataloader(self):
        return DataLoader(self.dataset, batch_size=8)

    def test_dataloader(self):
        return DataLoader(self.dataset, batch_size=8)


class ToyScenario(LightningDataModule):
    def __init__(self, names: tuple[str, ...] = ("a", "b")) -> None:
        super().__init__()
        self.clients = {name: ToyData(seed) for seed, name in enumerate(names)}

    def client_datamodules(self):
        return self.clients
