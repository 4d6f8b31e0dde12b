import torch

from lightning_fed.models.sequential.item_graph_embedding import graph_item_representations


def small_graph() -> torch.Tensor:
    # row-normalized transitions among 3 items: 0 -> {1, 2}, 1 -> {2}, 2 -> {0}
    dense = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float32)
    return dense, dense.to_sparse().coalesce()


def test_one_layer_is_e_plus_the_mean_of_e_and_a_e_with_its_gradient():
    dense, graph = small_graph()
    table = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]], dtype=torch.float32, requires_grad=True)
    out = graph_item_representations(table, graph, num_layers=1)
    # G + E = mean(E, A E) + E = 1.5 E + 0.5 A E (Eq. 1, L = 1)
    want = 1.5 * table.detach() + 0.5 * dense @ table.detach()
    assert torch.allclose(out, want)
    assert torch.allclose(out[0], torch.tensor([1.5 + 0.5 * 1.75, 3.0 + 0.5 * 1.5], dtype=torch.float32))
    upstream = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], dtype=torch.float32)
    (grad,) = torch.autograd.grad(out, table, upstream)
    # d/dE of <U, 1.5 E + 0.5 A E> = 1.5 U + 0.5 A^T U
    assert torch.allclose(grad, 1.5 * upstream + 0.5 * dense.t() @ upstream)


def test_two_layers_and_the_reference_form_keep_their_own_path():
    dense, graph = small_graph()
    table = torch.randn(3, 2, dtype=torch.float32, requires_grad=True)
    out = graph_item_representations(table, graph, num_layers=2)
    e = table.detach()
    assert torch.allclose(out, e + (e + dense @ e + dense @ dense @ e) / 3)
    bias = torch.tensor([1.0, -1.0], dtype=torch.float32)
    out = graph_item_representations(table, graph, 1, dropout=torch.nn.Identity(), bias=bias)
    # the reference code's form: G = (E + A drop(E) + b) / 2, here with drop = identity
    assert torch.allclose(out, (e + dense @ e + bias) / 2 + e)


def test_the_rows_a_batch_reads_are_the_whole_tables_rows_with_the_same_gradient():
    from lightning_fed.models.sequential.item_graph_embedding import graph_item_input_rows

    # 4 items, the last (padding) with no transitions at all: its row is 1.5 E alone
    dense = torch.tensor(
        [[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float32
    )
    graph = dense.to_sparse().coalesce()
    table = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0], [2.0, 2.0]], dtype=torch.float32, requires_grad=True)
    ids = torch.tensor([2, 0, 3, 2, 2])  # repeated ids, the padding row, an item never read (1)
    rows = graph_item_input_rows(table, graph, ids, num_layers=1)
    e = table.detach()
    assert torch.equal(rows[1], torch.tensor([1.5 + 0.5 * 1.75, 3.0 + 0.5 * 1.5]))  # 1.5 E_0 + 0.5 (E_1 + E_2) / 2
    assert torch.equal(rows[2], 1.5 * e[3])
    torch.testing.assert_close(rows, (1.5 * e + 0.5 * dense @ e)[ids], rtol=0, atol=1e-6)
    upstream = torch.arange(10, dtype=torch.float32).view(5, 2)
    (grad,) = torch.autograd.grad(rows, table, upstream)
    per_item = torch.zeros(4, 2).index_add_(0, ids, upstream)  # item 1 is read by nobody: only A^T reaches it
    torch.testing.assert_close(grad, 1.5 * per_item + 0.5 * dense.t() @ per_item, rtol=0, atol=1e-6)
    assert torch.equal(grad[1], 0.5 * 0.5 * per_item[0])  # E_1 reaches only item 0's row, with A[0, 1] = 0.5


def test_the_other_forms_take_the_rows_of_the_whole_table():
    from lightning_fed.models.sequential.item_graph_embedding import graph_item_input_rows

    dense, graph = small_graph()
    table = torch.randn(3, 2, dtype=torch.float32)
    ids = torch.tensor([1, 1, 0])
    two = graph_item_representations(table, graph, num_layers=2)
    assert torch.equal(graph_item_input_rows(table, graph, ids, num_layers=2), two[ids])
    bias = torch.tensor([1.0, -1.0])
    reference = graph_item_representations(table, graph, 1, dropout=torch.nn.Identity(), bias=bias)
    got = graph_item_input_rows(table, graph, ids, 1, dropout=torch.nn.Identity(), bias=bias)
    assert torch.equal(got, reference[ids])
    assert torch.equal(graph_item_input_rows(table, None, ids, num_layers=1), table[ids])
