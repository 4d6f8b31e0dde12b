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
