"""The expert's evaluation cache of G + E: computed once per evaluation, recomputed after any parameter update."""

import torch

from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.sequence_encoder import SequenceEncoder


def _expert(graph_form="mean"):
    torch.manual_seed(0)
    return Expert(5, SequenceEncoder(8, 1, 2, 0.0), 8, 4, 0.0, 1, graph_form=graph_form)


def _graph():
    # A_hat of 5 items + padding: 0 -> 1 -> 2 (row-normalized), a small non-symmetric graph
    indices = torch.tensor([[0, 1, 1], [1, 2, 0]])
    return torch.sparse_coo_tensor(indices, torch.tensor([1.0, 0.5, 0.5]), (6, 6), check_invariants=True).coalesce()


def test_evaluation_reuses_one_table_and_training_recomputes_it():
    expert, graph = _expert(), _graph()
    e = expert.item_embedding.weight.detach()
    want = 1.5 * e + 0.5 * torch.sparse.mm(graph, e)  # Eq. 1 with L = 1: E + mean(E, A E)
    expert.eval()
    with torch.no_grad():
        first = expert.item_representations(graph)
        assert expert.item_representations(graph) is first
    torch.testing.assert_close(first, want)
    expert.train()
    trained = expert.item_representations(graph)
    assert trained is not first and trained.requires_grad
    assert expert._cached_items is None


def test_an_optimizer_step_or_a_loaded_state_invalidates_the_cache():
    expert, graph = _expert("dropout_bias"), _graph()
    optimizer = torch.optim.Adam(expert.parameters(), lr=0.1, fused=True)
    expert.eval()
    with torch.no_grad():
        before = expert.item_representations(graph)
    expert.train()
    expert.item_representations(graph).pow(2).sum().backward()
    optimizer.step()
    expert.eval()
    with torch.inference_mode():
        after = expert.item_representations(graph)
        assert not torch.equal(after, before)
        torch.testing.assert_close(after, expert._compute_item_representations(graph))
        state = {k: v.clone() for k, v in expert.state_dict().items()}
    with torch.no_grad():
        expert.graph_bias.add_(1.0)  # an in-place change of the other parameter the table reads
        moved = expert.item_representations(graph)
        torch.testing.assert_close(moved, after + 0.5)  # b enters G = (E + A drop(E) + b) / 2
        expert.load_state_dict(state)
        torch.testing.assert_close(expert.item_representations(graph), after)


def test_the_task_releases_the_cache_at_the_end_of_an_evaluation_epoch():
    from lightning_fed.datamodules import FKCB
    from lightning_fed.models import FMoECDSR

    datamodule = FKCB(batch_size=8).client_datamodules()["Beauty"]
    datamodule.setup()
    model = FMoECDSR(hidden_dim=8, num_heads=2)
    model.build(datamodule)
    model.eval()
    with torch.no_grad():
        model.validation_step(next(iter(datamodule.val_dataloader())), 0)
    assert all(expert._cached_items is not None for expert in model.net.experts)
    model.on_validation_epoch_end()
    assert all(expert._cached_items is None for expert in model.net.experts)
