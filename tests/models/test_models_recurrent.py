"""Packed recurrences against running each sequence alone, and the recurrent initialization."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnkit.models.recurrent import BidirectionalRNN, init_recurrent_, run_bidirectional, run_packed


def test_run_packed_matches_each_sequence_alone() -> None:
    torch.manual_seed(0)
    for rnn in (nn.LSTM(5, 3, bidirectional=True, batch_first=True), nn.GRU(5, 3, batch_first=True)):
        x = torch.randn(4, 9, 5)
        lengths = torch.tensor([9, 4, 0, 1])
        out = run_packed(rnn, x, lengths)
        width = 6 if rnn.bidirectional else 3
        assert out.shape == (4, 9, width)
        for row, n in enumerate(lengths.tolist()):
            if n:
                alone, _ = rnn(x[row : row + 1, :n])
                torch.testing.assert_close(out[row, :n], alone[0], atol=1e-6, rtol=1e-5)
            assert torch.all(out[row, n:] == 0)


def test_init_recurrent() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, batch_first=True)
    init_recurrent_(lstm)
    torch.testing.assert_close(lstm.bias_ih_l0, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))
    assert torch.all(lstm.bias_hh_l0 == 0)
    for gate in lstm.weight_hh_l0.split(3):
        torch.testing.assert_close(gate @ gate.T, torch.eye(3), atol=1e-5, rtol=0)  # orthogonal per gate
    gru = nn.GRU(4, 3)
    init_recurrent_(gru)
    assert torch.all(gru.bias_ih_l0 == 0)


def test_bidirectional_rnn_matches_a_packed_bidirectional_rnn() -> None:
    torch.manual_seed(0)
    for cell in (nn.GRU, nn.LSTM):
        ours = BidirectionalRNN(5, 3, cell=cell)
        ref = cell(5, 3, bidirectional=True, batch_first=True)
        with torch.no_grad():
            for name, param in ours.forward_rnn.named_parameters():
                getattr(ref, name).copy_(param)
            for name, param in ours.backward_rnn.named_parameters():
                getattr(ref, f"{name}_reverse").copy_(param)
        x = torch.randn(4, 9, 5)
        lengths = torch.tensor([9, 4, 0, 1])
        torch.testing.assert_close(ours(x, lengths), run_packed(ref, x, lengths), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layers", [1, 2])
def test_run_bidirectional_equals_packing_in_values_and_gradients(
    cell: type[nn.RNNBase], layers: int
) -> None:
    torch.manual_seed(0)
    rnn = cell(
        5, 3, num_layers=layers, bidirectional=True, batch_first=True, dropout=0.3 if layers > 1 else 0.0
    )
    rnn.eval()  # nn.LSTM's between-layer dropout is random; equality needs it off
    x = torch.randn(4, 9, 5, requires_grad=True)
    lengths = torch.tensor([9, 4, 0, 1])
    packed = run_packed(rnn, x, lengths)
    packed_grads = torch.autograd.grad(packed.square().sum(), [x, *rnn.parameters()])
    unpacked = run_bidirectional(rnn, x, lengths)
    unpacked_grads = torch.autograd.grad(unpacked.square().sum(), [x, *rnn.parameters()])
    torch.testing.assert_close(unpacked, packed, atol=1e-6, rtol=1e-5)
    for ours, reference in zip(unpacked_grads, packed_grads, strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
    # Padding never reaches a real step: more of it changes nothing.
    longer = torch.cat([x, torch.randn(4, 5, 5)], dim=1)  # (4, 14, 5)
    torch.testing.assert_close(run_bidirectional(rnn, longer, lengths)[:, :9], unpacked, atol=1e-6, rtol=1e-5)


def test_run_bidirectional_applies_dropout_between_layers_in_training_only() -> None:
    torch.manual_seed(0)
    rnn = nn.LSTM(5, 3, num_layers=2, bidirectional=True, batch_first=True, dropout=0.5)
    x, lengths = torch.randn(8, 6, 5), torch.full((8,), 6)
    rnn.train()
    first, second = run_bidirectional(rnn, x, lengths), run_bidirectional(rnn, x, lengths)
    assert not torch.allclose(first, second)
    rnn.eval()
    torch.testing.assert_close(
        run_bidirectional(rnn, x, lengths), run_packed(rnn, x, lengths), atol=1e-6, rtol=1e-5
    )
    one_layer = nn.LSTM(5, 3, bidirectional=True, batch_first=True).train()  # no dropout with one layer
    torch.testing.assert_close(run_bidirectional(one_layer, x, lengths), run_packed(one_layer, x, lengths))


def test_run_bidirectional_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="bidirectional"):
        run_bidirectional(nn.LSTM(5, 3, batch_first=True), torch.randn(1, 2, 5), torch.tensor([2]))


def test_recurrences_run_in_float32_under_a_bf16_autocast() -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 3, bidirectional=True, batch_first=True)
    gru = BidirectionalRNN(5, 3)
    x, lengths = torch.randn(3, 6, 5), torch.tensor([6, 2, 4])
    expected = run_bidirectional(lstm, x, lengths), gru(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # oneDNN has no bf16 LSTM here: it used to raise
        got = run_bidirectional(lstm, x.bfloat16(), lengths), gru(x.bfloat16(), lengths)
    for ours, reference in zip(got, expected, strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, reference, atol=2e-2, rtol=0)  # inputs rounded to bf16 only
