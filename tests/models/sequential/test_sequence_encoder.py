import pytest
import torch

from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.sequence_encoder import SequenceEncoder


def make_expert(num_items=20, d=16):
    torch.manual_seed(0)
    encoder = SequenceEncoder(d, num_blocks=2, num_heads=4, dropout=0.0)
    return Expert(num_items, encoder, d, max_seq_len=6, dropout=0.0, gnn_layers=0).eval()


def test_changing_a_later_item_leaves_earlier_outputs_unchanged():
    expert = make_expert()
    pad = 20
    seq = torch.tensor([[pad, pad, 3, 7, 11, 5]])
    changed = seq.clone()
    changed[0, 4] = 13
    with torch.no_grad():
        a, b = expert(seq, None), expert(changed, None)
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_padding_outputs_are_zero_and_padding_does_not_leak():
    expert = make_expert()
    pad = 20
    short = torch.tensor([[pad, pad, pad, 4, 8, 2]])
    with torch.no_grad():
        out = expert(short, None)
    assert torch.count_nonzero(out[0, :3]) == 0
    # The same items with more left padding give the same outputs (the positions are right-aligned).
    longer_pad = torch.tensor([[pad, pad, pad, 4, 8, 2], [pad, 1, 9, 4, 8, 2]])
    with torch.no_grad():
        batch = expert(longer_pad, None)
    torch.testing.assert_close(batch[0], out[0])


def test_packed_encoder_equals_masked_dense_attention():
    """The packed implementation gives what a dense, masked computation gives at non-padding positions."""
    torch.manual_seed(1)
    d, heads = 8, 2
    encoder = SequenceEncoder(d, num_blocks=1, num_heads=heads, dropout=0.0).eval()
    block = encoder.blocks[0]
    x = torch.randn(2, 4, d)
    valid = torch.tensor([[False, True, True, True], [False, False, True, True]])
    x = x * valid.unsqueeze(-1)
    with torch.no_grad():
        out = encoder(x, valid)
        h = block.attn_norm(x)
        q, k, v = block.qkv(h).view(2, 4, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / (d // heads) ** 0.5
        allowed = torch.ones(4, 4, dtype=torch.bool).tril() & valid[:, None, None, :]
        scores = scores.masked_fill(~allowed, float("-inf"))
        attn = torch.nan_to_num(torch.softmax(scores, -1)) @ v
        y = x + block.out(attn.transpose(1, 2).reshape(2, 4, d))
        y = y + block.ffn(block.ffn_norm(y))
        expected = encoder.final_norm(y) * valid.unsqueeze(-1)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("block_form", ["pre_norm", "sasrec"])
@pytest.mark.parametrize("kl_regularizer", [False, True])
def test_last_only_is_the_last_position_of_the_full_encoding(block_form, kl_regularizer):
    torch.manual_seed(7)
    encoder = SequenceEncoder(16, num_blocks=2, num_heads=2, dropout=0.0, block_form=block_form,
                              kl_regularizer=kl_regularizer).eval()  # fmt: skip
    valid = torch.tensor([[False, False, True, True, True], [True, True, True, True, True],
                          [False, False, False, False, True], [False, False, False, False, False]])  # fmt: skip
    x = torch.randn(4, 5, 16) * valid.unsqueeze(-1)
    with torch.no_grad():
        full = encoder(x, valid)
        last = encoder(x, valid, last_only=True)
    assert last.shape == (4, 16)
    torch.testing.assert_close(last, full[:, -1], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(last[3]) == 0  # an empty sequence has no last token: zero, as in the full output


@pytest.mark.parametrize("block_form", ["pre_norm", "sasrec"])
@pytest.mark.parametrize("kl_regularizer", [False, True])
def test_full_rows_equal_the_full_encoding_where_they_compute_and_give_the_same_gradients(block_form, kl_regularizer):
    torch.manual_seed(3)
    encoder = SequenceEncoder(8, num_blocks=2, num_heads=2, dropout=0.0, block_form=block_form,
                              kl_regularizer=kl_regularizer).double()  # fmt: skip
    # three sequences, then three views of which only z_T is wanted (one of them empty)
    valid = torch.tensor([[False, True, True, True], [True, True, True, True], [False, False, True, True],
                          [False, False, True, True], [False, False, False, False],
                          [True, True, True, True]])  # fmt: skip
    x = (torch.randn(6, 4, 8, dtype=torch.float64) * valid.unsqueeze(-1)).requires_grad_()
    weights = torch.randn(3, 4, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)

    def run(**kwargs):
        encoder.zero_grad()
        x.grad = None
        out = encoder(x, valid, **kwargs)
        kl = encoder.last_kl[:3] if kl_regularizer else out.new_zeros(3)
        ((out[:3] * weights[0]).sum() + (out[3:, -1] * weights[1]).sum() + kl.sum()).backward()
        grads = [x.grad.clone()] + [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
        return out.detach(), kl.detach(), grads

    full, full_kl, full_grads = run()
    part, part_kl, part_grads = run(full_rows=3)
    torch.testing.assert_close(part[:3], full[:3])
    torch.testing.assert_close(part[3:, -1], full[3:, -1])
    assert torch.count_nonzero(part[3:, :-1]) == 0  # not computed
    if kl_regularizer:
        assert encoder.last_kl.shape == (3,)
    torch.testing.assert_close(part_kl, full_kl)
    assert len(part_grads) == len(full_grads)
    for a, b in zip(part_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("block_form", ["pre_norm", "sasrec"])
def test_kl_false_gives_the_same_outputs_without_running_the_logvar_stack(block_form):
    torch.manual_seed(5)
    encoder = SequenceEncoder(8, num_blocks=2, num_heads=2, dropout=0.0, block_form=block_form,
                              kl_regularizer=True).eval()  # fmt: skip
    valid = torch.tensor([[False, True, True, True], [True, True, True, True]])
    x = torch.randn(2, 4, 8) * valid.unsqueeze(-1)
    calls = []
    for block in encoder.logvar_blocks:
        block.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        with_kl = encoder(x, valid)
        assert len(calls) == 2 and encoder.last_kl.shape == (2,)
        encoder.last_kl = None
        without = encoder(x, valid, kl=False)
    assert len(calls) == 2 and encoder.last_kl is None  # no logvar block ran, no KL was set
    torch.testing.assert_close(without, with_kl, rtol=0, atol=0)


def test_kl_false_is_refused_where_sampling_needs_the_logvar_stack():
    encoder = SequenceEncoder(8, num_blocks=1, num_heads=2, dropout=0.0, kl_regularizer=True, sample_latent=True)
    valid = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="sample_latent"):
        encoder.train()(torch.randn(1, 3, 8), valid, kl=False)
    assert encoder.eval()(torch.randn(1, 3, 8), valid, kl=False).shape == (1, 3, 8)  # evaluation outputs mu


def test_a_packed_input_is_its_dense_inputs_non_padding_rows():
    torch.manual_seed(2)
    encoder = SequenceEncoder(8, num_blocks=2, num_heads=2, dropout=0.0).eval()
    valid = torch.tensor([[False, True, True, True], [False, False, True, True]])
    x = torch.randn(2, 4, 8) * valid.unsqueeze(-1)
    packed = x[valid]  # row-major order of the True positions: (0, 1), (0, 2), (0, 3), (1, 2), (1, 3)
    with torch.no_grad():
        assert torch.equal(encoder(packed, valid), encoder(x, valid))
        assert torch.equal(encoder(packed, valid, last_only=True), encoder(x, valid, last_only=True))
    with pytest.raises(ValueError, match=r"one row per non-padding position \(5\), got 4 rows"):
        encoder(packed[:4], valid)


def test_the_expert_embeds_only_the_non_padding_positions():
    # Eq. 2 at the non-padding positions: LN(E[item] * sqrt(d) + P[position]), with right-aligned positions
    expert = make_expert(d=16)
    pad = 20
    seq = torch.tensor([[pad, pad, 3, 7, 11, 5], [pad, pad, pad, pad, 2, 2]])
    with torch.no_grad():
        x, valid = expert.embed(seq, None)
        table, positions = expert.item_embedding.weight, expert.position_embedding.weight
        want = [expert.input_norm(table[seq[b, p]] * 4.0 + positions[p]) for b, p in valid.nonzero().tolist()]
    assert torch.equal(valid, seq != pad)
    assert x.shape == (6, 16)
    torch.testing.assert_close(x, torch.stack(want), rtol=0, atol=1e-6)


def _scatter_then_cast(packed, tokens, rows):
    """The scatter without the early cast: fp32 rows scattered, the projection's autocast casting after it."""
    return packed.new_zeros(rows, packed.size(-1)).index_copy_(0, tokens, packed)


@pytest.mark.parametrize("block_form", ["pre_norm", "sasrec"])
def test_under_autocast_the_packed_rows_are_cast_before_the_scatter_with_the_same_results(block_form, monkeypatch):
    """Casting the N packed rows to bf16 before the scatter gives bit for bit what casting the scattered rows did."""
    from lightning_fed.models.sequential.sequence_encoder import CausalSelfAttentionBlock

    torch.manual_seed(3)
    encoder = SequenceEncoder(16, num_blocks=2, num_heads=2, dropout=0.0, block_form=block_form)
    valid = torch.tensor([[False, False, True, True, True], [True, True, True, True, True],
                          [False, False, False, True, True]])  # fmt: skip
    x = torch.randn(3, 5, 16) * valid.unsqueeze(-1)

    def run(last_only):
        encoder.zero_grad()
        inputs = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = encoder(inputs, valid, last_only=last_only)
        out.float().square().sum().backward()
        return out, inputs.grad, [p.grad.clone() for p in encoder.parameters()]

    results = {last: run(last) for last in (False, True)}
    tokens = valid.reshape(-1).nonzero().squeeze(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        unpacked = CausalSelfAttentionBlock._unpack_rows(torch.randn(len(tokens), 16), tokens, 15)
    assert unpacked.dtype == torch.bfloat16 and torch.count_nonzero(unpacked[~valid.reshape(-1)]) == 0
    monkeypatch.setattr(CausalSelfAttentionBlock, "_unpack_rows", staticmethod(_scatter_then_cast))
    for last_only, (out, input_grad, grads) in results.items():
        old_out, old_input_grad, old_grads = run(last_only)
        assert torch.equal(out, old_out) and torch.equal(input_grad, old_input_grad)
        assert all(torch.equal(a, b) for a, b in zip(grads, old_grads, strict=True))


def test_one_query_per_sequence_in_order_reads_the_keys_in_place():
    """Scoring's queries (each sequence's last token, in order) skip the per-query copy of K and V: same outputs."""
    torch.manual_seed(5)
    encoder = SequenceEncoder(16, num_blocks=1, num_heads=4, dropout=0.0).eval()
    block = encoder.blocks[0]
    valid = torch.tensor([[False, True, True, True], [True, True, True, True], [False, False, True, True]])
    tokens = valid.reshape(-1).nonzero().squeeze(1)
    x = torch.randn(len(tokens), 16)
    mask = encoder.attention_mask(valid)
    last = (tokens % 4 == 3).nonzero().squeeze(1)  # one per sequence, in order: no copy
    with torch.no_grad():
        in_order = block._attend_queries(x, None, tokens, (3, 4), mask, last)
        reversed_order = block._attend_queries(x, None, tokens, (3, 4), mask, last.flip(0))  # the copying path
    torch.testing.assert_close(in_order, reversed_order.flip(0))
