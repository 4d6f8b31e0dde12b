"""How the Flower pool waits for one request's replies, on a grid whose nodes answer at once (no training)."""

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from lightning_fed.flower.loopback import LoopbackGrid
from lightning_fed.flower.pool import ClientFailure, FlowerPool

NODES = [{"client": "Food"}, {"client": "Beauty"}]


def echo(message, context):
    """A ClientApp that answers with its client's name."""
    return Message(RecordDict({"client": ConfigRecord({"name": context.node_config["client"]})}), reply_to=message)


class Trickle(LoopbackGrid):
    """Replies reach the server one per pull, after an empty first pull, last node first."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pulls = 0

    def pull_messages(self, message_ids):
        self.pulls += 1
        ready = [key for key in message_ids if key in self._pending]
        return [] if self.pulls == 1 else [self._pending.pop(k) for k in ready[-1:]]


class RefusesBeauty(LoopbackGrid):
    """A SuperLink that could not take the message for Beauty's node (``push_messages`` gives None for it)."""

    def push_messages(self, messages):
        messages = list(messages)
        ids = list(super().push_messages(messages))
        return [None if self.contexts[m.metadata.dst_node_id].node_config["client"] == "Beauty" else i
                for m, i in zip(messages, ids)]  # fmt: skip


def send(grid, timeout=5.0):
    """The pool's wait for one ``train`` request to every node; returns the replies' client names, in order."""
    pool = FlowerPool.__new__(FlowerPool)  # only the request path: no identify handshake
    pool.grid, pool.timeout = grid, timeout
    nodes = list(grid.get_node_ids())
    messages = [pool._message(node, "train", RecordDict()) for node in nodes]
    label = {node: grid.contexts[node].node_config["client"] for node in nodes}
    replies = pool._send(messages, label)
    return [reply.content.config_records["client"]["name"] for reply in replies]


def test_replies_that_arrive_one_per_pull_come_back_in_the_requests_order():
    grid = Trickle(echo, NODES)
    assert send(grid) == ["Food", "Beauty"]
    assert grid.pulls == 3  # an empty pull, then Beauty's reply, then Food's


def test_a_message_the_superlink_did_not_take_names_its_client():
    with pytest.raises(ClientFailure, match=r"did not take the train message\(s\) for client\(s\) Beauty"):
        send(RefusesBeauty(echo, NODES))
