import torch

from lightning_fed.datamodules.sequential.item_graph import item_transition_graph
from lightning_fed.models.sequential.item_graph_embedding import graph_item_representations


def test_row_normalized_transition_counts():
    # transitions: 0->1 twice, 1->2 once, 0->2 once; item 2 and the padding row (3) have no out-edges
    graph = item_transition_graph([[0, 1, 2], [0, 1], [0, 2]], num_items=3)
    assert graph.is_sparse and graph.is_coalesced()
    expected = torch.tensor(
        [
            [0.0, 2 / 3, 1 / 3, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(graph.to_dense(), expected)


def test_item_input_is_the_mean_of_layer_outputs_plus_the_table():
    graph = item_transition_graph([[0, 1, 2], [2, 0]], num_items=3)
    table = torch.randn(4, 5)
    dense = graph.to_dense()
    torch.testing.assert_close(graph_item_representations(table, graph, 1), (table + dense @ table) / 2 + table)
    two = (table + dense @ table + dense @ dense @ table) / 3 + table
    torch.testing.assert_close(graph_item_representations(table, graph, 2), two)
    assert graph_item_representations(table, graph, 0) is table
