"""The real ServerApp and ClientApps over an in-process grid: every strategy, the same numbers as in process.

``fresh_process=True`` rebuilds every client from its saved state for every message, as a deployment's
process-per-message does: what a client keeps across rounds must survive that.
"""

import subprocess
import sys

import pytest
import torch
from conftest import CONFIG, ROOT, TINY
from flower_runs import broken_beauty, metrics_of, run_in_process, run_on_loopback

from lightning_fed.flower.codec import loads
from lightning_fed.flower.experiment import load_experiment
from lightning_fed.flower.loopback import LoopbackGrid
from lightning_fed.flower.pool import ClientFailure

TWO_ROUNDS = [*TINY, "--federation.rounds=2", "--federation.local_epochs=1"]
NODES = [{"client": "Beauty"}, {"client": "Food"}]  # not in the scenario's order: the handshake maps them
ALIEXPRESS = [
    f"--config={ROOT / 'configs' / 'aliexpress.yaml'}",
    f"--data.init_args.root={ROOT / 'tests' / 'fixtures' / 'aliexpress'}",
    "--data.init_args.scenarios=[A, B]",
    "--data.init_args.val_fraction=0.3",
    "--federation.rounds=2",
    "--model.init_args.expert_dims=[16]",
    "--trainer.enable_progress_bar=false",
]


def shared_keys(run_dir, client):
    """The keys of ``client``'s shared_state(), from a client built as its own machine would build it."""
    loaded = load_experiment(run_dir / "experiment.yaml")
    datamodule = loaded.scenario.client_datamodule(client)
    datamodule.setup("fit")
    module = loaded.federation.build_client(loaded.model, client, datamodule, server=None).module
    return set(module.shared_state())


def assert_only_shared_tensors_travel(grid, run_dir, clients):
    allowed = set().union(*(shared_keys(run_dir, c) for c in clients))
    for message in [*grid.sent, *grid.replies]:
        assert not message.has_error()
        for record in message.content.array_records.values():
            assert set(record.keys()) <= allowed
        for record in message.content.config_records.values():
            assert not any(isinstance(v, bytes) for v in record.values())  # no private blob on the wire


def test_fmoe_cdsr_expert_exchange_matches_in_process_and_sends_only_encoders(tmp_path):
    args = [CONFIG, *TWO_ROUNDS]
    flower, grid = run_on_loopback(args, tmp_path / "flower", NODES, fresh_process=True)
    local = run_in_process(args, tmp_path / "inprocess")
    assert metrics_of(flower) == metrics_of(local)
    assert flower["clients"] == ["Food", "Beauty"] and flower["rounds_run"] == 2
    assert_only_shared_tensors_travel(grid, tmp_path / "flower", ["Food", "Beauty"])
    # Round 2: Beauty downloads exactly Food's round-1 upload (ExpertExchange), nothing averaged.
    node_of = {grid.contexts[n].node_config["client"]: n for n in grid.contexts}
    trains = [(m, r) for m, r in zip(grid.sent, grid.replies) if m.metadata.message_type == "train"]
    food_round1 = next(r for m, r in trains if m.metadata.dst_node_id == node_of["Food"] and m.metadata.group_id == "1")
    beauty_round2 = next(
        m for m, r in trains if m.metadata.dst_node_id == node_of["Beauty"] and m.metadata.group_id == "2"
    )
    assert set(beauty_round2.content.array_records) == {"payload/Food"}
    sent, uploaded = beauty_round2.content.array_records["payload/Food"], food_round1.content.array_records["upload"]
    assert list(sent.keys()) == list(uploaded.keys())
    for key in sent.keys():
        assert (sent[key].numpy() == uploaded[key].numpy()).all()
    # Adam's step continued across the two rounds although every message rebuilt the client: 2 batches x 2 rounds.
    records = grid.contexts[node_of["Beauty"]].state.config_records
    (last,) = [name for name in records if name.endswith(".last")]
    assert last == f"lightning_fed.{flower['run_id']}.last"  # kept per federation run
    state = loads(records[last]["blob"])
    (adam,) = state["runtime"]["sync"]["optimizer_states"]
    assert {float(s["step"]) for s in adam["state"].values()} == {4.0}


def test_fedsasrec_fedavg_matches_in_process(tmp_path):
    args = [f"--config={ROOT / 'configs' / 'fedsasrec_fkcb_cpu.yaml'}", *TWO_ROUNDS]
    flower, grid = run_on_loopback(args, tmp_path / "flower", NODES, fresh_process=False)
    assert metrics_of(flower) == metrics_of(run_in_process(args, tmp_path / "inprocess"))
    assert_only_shared_tensors_travel(grid, tmp_path / "flower", ["Food", "Beauty"])
    trains = [m for m in grid.sent if m.metadata.message_type == "train" and m.metadata.group_id == "2"]
    assert all(set(m.content.array_records) == {"payload/global"} for m in trains)


def test_local_only_sends_no_tensor_at_all(tmp_path):
    args = [CONFIG, f"--config={ROOT / 'configs' / 'variants' / 'local_expert.yaml'}", *TWO_ROUNDS]
    flower, grid = run_on_loopback(args, tmp_path / "flower", NODES, fresh_process=False)
    assert metrics_of(flower) == metrics_of(run_in_process(args, tmp_path / "inprocess"))
    assert all(not m.content.array_records for m in [*grid.sent, *grid.replies])


def test_pf_msmtrec_personalized_aggregation_matches_in_process(tmp_path):
    nodes = [{"client": "B"}, {"client": "A"}]
    flower, grid = run_on_loopback(ALIEXPRESS, tmp_path / "flower", nodes, fresh_process=True)
    assert metrics_of(flower) == metrics_of(run_in_process(ALIEXPRESS, tmp_path / "inprocess"))
    assert_only_shared_tensors_travel(grid, tmp_path / "flower", ["A", "B"])
    trains = [m for m in grid.sent if m.metadata.message_type == "train" and m.metadata.group_id == "2"]
    assert all(set(m.content.array_records) == {"payload/global", "payload/personal"} for m in trains)


def test_a_node_state_dir_keeps_the_client_state_on_disk(tmp_path):
    nodes = [{"client": c, "state-dir": str(tmp_path / "node" / c)} for c in ("Food", "Beauty")]
    flower, grid = run_on_loopback([CONFIG, *TWO_ROUNDS], tmp_path / "flower", nodes, fresh_process=True)
    assert metrics_of(flower) == metrics_of(run_on_loopback([CONFIG, *TWO_ROUNDS], tmp_path / "ctx", NODES)[0])
    for client in ("Food", "Beauty"):
        (run,) = (tmp_path / "node" / client).iterdir()
        saved = torch.load(run / client / "last.pt", weights_only=True)
        best = torch.load(run / client / "best.pt", weights_only=True)
        assert saved["round"] == 2 and best["round"] == flower["best_round"]
        assert (run / client / "csv").is_dir()  # the client's training log stays on its machine
    for context in grid.contexts.values():  # nothing large in the node's memory
        assert not any(name.endswith((".last", ".best")) for name in context.state.config_records)


def test_a_resumed_flower_run_continues_from_the_nodes_state_dirs(tmp_path):
    """Round 1, then every process gone (new node contexts), then round 2 resumed: as if never interrupted."""
    nodes = [{"client": c, "state-dir": str(tmp_path / "node" / c)} for c in ("Beauty", "Food")]
    whole, _ = run_on_loopback([CONFIG, *TWO_ROUNDS], tmp_path / "whole", nodes)
    nodes = [{"client": c, "state-dir": str(tmp_path / "node_resumed" / c)} for c in ("Beauty", "Food")]
    first, _ = run_on_loopback([CONFIG, *TWO_ROUNDS, "--federation.rounds=1"], tmp_path / "resumed", nodes)
    resumed, _ = run_on_loopback([CONFIG, *TWO_ROUNDS], tmp_path / "resumed", nodes, run_config={"resume": "last"})
    assert resumed["run_id"] == first["run_id"] and resumed["rounds_run"] == 2
    assert metrics_of(resumed) == metrics_of(whole)
    # Nodes that lost their clients' states (no state dir) cannot resume that run: refused by name.
    with pytest.raises(ClientFailure, match=r"client Food holds no state of run .* rounds 1..2 cannot be resumed"):
        run_on_loopback([CONFIG, *TWO_ROUNDS, "--federation.rounds=3"], tmp_path / "resumed", NODES,
                        run_config={"resume": "last"})  # fmt: skip


class Withholding(LoopbackGrid):
    """A grid that never delivers the replies of ``silent``'s node to ``message_type`` (a machine gone mid-round)."""

    silent, message_type = "Beauty", "train"

    def pull_messages(self, message_ids):
        replies = super().pull_messages(message_ids)
        return [r for r in replies if self.contexts[r.metadata.src_node_id].node_config["client"] != self.silent
                or r.metadata.message_type != self.message_type]  # fmt: skip


def test_a_client_that_does_not_answer_fails_the_run_with_its_name(tmp_path):
    with pytest.raises(ClientFailure, match=r"client\(s\) Beauty did not answer train within 2 s"):
        run_on_loopback([CONFIG, *TWO_ROUNDS], tmp_path, NODES, grid=Withholding, run_config={"round-timeout": 2.0})


def test_a_client_whose_handler_fails_is_named_with_the_reason(tmp_path):
    root = tmp_path / "beauty_machine"
    path = broken_beauty(root)
    nodes = [{"client": "Beauty", "data-root": str(root)}, {"client": "Food"}]
    with pytest.raises(ClientFailure, match=rf"client Beauty failed .*{path}:3"):
        run_on_loopback([CONFIG, *TWO_ROUNDS], tmp_path / "run", nodes)


class FoodStillTraining(Withholding):
    """Food's training reply has not arrived yet (its round goes on) when Beauty's failure does."""

    silent = "Food"


def test_a_failure_ends_the_request_without_waiting_for_the_other_clients(tmp_path):
    """Beauty's failed reply is reported as soon as it arrives, although Food has not answered (no timeout)."""
    root = tmp_path / "beauty_machine"
    path = broken_beauty(root)
    nodes = [{"client": "Beauty", "data-root": str(root)}, {"client": "Food"}]
    with pytest.raises(ClientFailure, match=rf"client Beauty failed train: .*{path}:3"):
        run_on_loopback(
            [CONFIG, *TWO_ROUNDS], tmp_path / "run", nodes, grid=FoodStillTraining, run_config={"round-timeout": 60.0}
        )


def test_runtime_flower_without_flwr_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['flwr'] = None; from lightning_fed.cli import main; "
        f"sys.argv = ['main.py', 'fit', {CONFIG!r}, *{TINY!r}, '--federation.runtime=flower', "
        f"'--trainer.default_root_dir={tmp_path}']; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install 'lightning-fed[flower]'" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
