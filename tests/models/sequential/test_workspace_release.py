"""A client's Trainer leaves no head-loss buffers behind: a federation holds every client's model between rounds."""

import torch
from lightning import Callback, Trainer

from lightning_fed.datamodules import FKCB
from lightning_fed.models import FMoECDSR
from lightning_fed.models.layers.workspace import WORKSPACE


class BufferNames(Callback):
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen |= {key[0] for key in WORKSPACE.buffers}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen |= {key[0] for key in WORKSPACE.buffers}


def test_training_and_evaluation_release_their_workspace_buffers(tmp_path):
    datamodule = FKCB(domains=["Beauty", "Food"], max_sequences=48, batch_size=16, num_negatives=9)
    datamodule = datamodule.client_datamodules()["Beauty"]
    datamodule.setup()
    torch.manual_seed(0)
    model = FMoECDSR(hidden_dim=8, num_heads=2)  # fusion_logits="keep": kept0 and kept1 during training
    model.build(datamodule)
    WORKSPACE.clear()
    names = BufferNames()
    trainer = Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[names],
                      default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    assert {"kept0", "kept1"} <= names.seen
    assert WORKSPACE.buffers == {}
    names.seen.clear()
    evaluator = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[names],
                        default_root_dir=tmp_path)  # fmt: skip
    evaluator.validate(model, datamodule=datamodule, verbose=False)
    assert "scores" in names.seen
    assert "scores" not in {key[0] for key in WORKSPACE.buffers}
