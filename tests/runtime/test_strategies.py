import pytest
import torch

from lightning_fed.server import Server
from lightning_fed.strategies import ExpertExchange, FedAvg, LocalOnly


def test_fedavg_weights_by_training_size():
    server = Server(FedAvg(), ["a", "b", "c"])
    server.upload("a", {"w": torch.tensor([1.0, 0.0]), "n": torch.tensor(3)}, num_examples=1)
    server.upload("b", {"w": torch.tensor([4.0, 2.0]), "n": torch.tensor(5)}, num_examples=3)
    server.aggregate()
    expected = torch.tensor([(1 * 1 + 3 * 4) / 4, (3 * 2) / 4])
    payload = server.download("c")
    assert list(payload) == ["global"]
    torch.testing.assert_close(payload["global"]["w"], expected)
    assert payload["global"]["n"].item() == 5  # integer tensors come from the largest client
    assert server.inbox == {}


def test_fedavg_initializes_everyone_from_one_state():
    server = Server(FedAvg(), ["a", "b"])
    server.initialize({"w": torch.ones(2)})
    torch.testing.assert_close(server.download("b")["global"]["w"], torch.ones(2))


def test_expert_exchange_overwrites_and_serves_the_others():
    server = Server(ExpertExchange(), ["a", "b", "c"])
    assert server.download("a") == {}  # round 1: empty cache
    server.upload("a", {"w": torch.zeros(1)}, 10)
    server.upload("b", {"w": torch.ones(1)}, 1)
    server.aggregate()
    server.upload("a", {"w": torch.full((1,), 7.0)}, 10)
    server.aggregate()
    payload = server.download("b")
    assert sorted(payload) == ["a"]  # b never receives its own entry
    assert payload["a"]["w"].item() == 7.0  # overwritten, not averaged
    assert sorted(server.download("c")) == ["a", "b"]


def test_local_only_exchanges_nothing():
    server = Server(LocalOnly(), ["a", "b"])
    server.upload("a", {"w": torch.zeros(1)}, 1)
    server.aggregate()
    assert server.download("b") == {} and server.store == {}


def test_client_sampling_fraction_and_determinism():
    clients = ["a", "b", "c", "d"]
    server = Server(ExpertExchange(), clients, fraction=0.5, seed=3)
    picks = [server.sample_clients(r) for r in range(1, 30)]
    assert all(len(p) == 2 and set(p) <= set(clients) for p in picks)
    assert picks == [Server(ExpertExchange(), clients, 0.5, 3).sample_clients(r) for r in range(1, 30)]
    assert len({tuple(p) for p in picks}) > 1
    assert Server(ExpertExchange(), clients).sample_clients(1) == clients
    with pytest.raises(ValueError, match="fraction"):
        Server(ExpertExchange(), clients, fraction=0.0)
    with pytest.raises(ValueError, match="unknown client"):
        server.upload("z", {}, 1)


def test_expert_exchange_with_one_sync_keeps_the_first_checkpoints():
    server = Server(ExpertExchange(max_syncs=1), ["a", "b"])
    server.upload("a", {"w": torch.zeros(1)}, 1)
    server.aggregate()
    server.upload("a", {"w": torch.ones(1)}, 1)
    server.upload("b", {"w": torch.ones(1)}, 1)
    server.aggregate()
    assert server.download("b")["a"]["w"].item() == 0.0 and "b" not in server.store
    resumed = Server(ExpertExchange(max_syncs=1), ["a", "b"])
    resumed.load_state_dict(server.state_dict())  # a resumed run does not synchronize again
    resumed.upload("b", {"w": torch.ones(1)}, 1)
    resumed.aggregate()
    assert "b" not in resumed.store
    with pytest.raises(ValueError, match="max_syncs"):
        ExpertExchange(max_syncs=0)
