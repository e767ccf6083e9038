"""Recurrent encoders over padded batches: packing so padding never reaches the recurrence.

Dimension legend: ``N`` sequences, ``L`` steps, ``I`` input size, ``H`` hidden size per direction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def run_packed(rnn: nn.RNNBase, inputs: Tensor, lengths: Tensor) -> Tensor:
    """Run a ``batch_first`` RNN over the first ``lengths[n]`` steps of each row only.

    Both directions of a bidirectional RNN start at each row's own last real step, so the result does not
    depend on how much padding follows.

    Args:
        rnn: a ``batch_first`` ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``.
        inputs: ``(N, L, I)``.
        lengths: ``(N,)`` number of real steps per row (0 allowed: that row's output is all zeros).

    Returns:
        ``(N, L, dirs * H)`` outputs, zero at steps ``>= lengths[n]``.
    """
    total = inputs.shape[1]
    # pack_padded_sequence rejects empty rows: run them over one (ignored) step and zero them afterwards.
    packed = pack_padded_sequence(inputs, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    states, _ = pad_packed_sequence(out, batch_first=True, total_length=total)  # (N, L, dirs * H)
    empty = (lengths == 0).to(states.device)  # (N,)
    return states.masked_fill(empty[:, None, None], 0.0)


class WithinLengthReversal:
    """Reverses each row of ``(N, L, D)`` tensors within its own length (padding stays in place after it).

    Step ``t`` <-> ``length - 1 - t`` on real steps: the reversal is its own inverse. It runs as one row
    selection over the flattened ``N * L`` steps, several times faster on CPU than ``gather``.

    Args:
        lengths: ``(N,)`` real steps per row.
        steps: ``L``, the padded length.
    """

    def __init__(self, lengths: Tensor, steps: int) -> None:
        positions = torch.arange(steps, device=lengths.device)  # (L,)
        column = lengths.unsqueeze(1)  # (N, 1)
        self.real = positions < column  # (N, L): True on steps < lengths[n]
        order = torch.where(self.real, column - 1 - positions, positions)  # (N, L)
        rows = torch.arange(lengths.shape[0], device=lengths.device).unsqueeze(1)  # (N, 1)
        self.flat_order = (order + rows * steps).flatten()  # (N * L,)

    def __call__(self, x: Tensor) -> Tensor:
        """``(N, L, D)`` -> ``(N, L, D)``; shapes are read from ``x`` so that a traced export stays dynamic."""
        return x.flatten(0, 1).index_select(0, self.flat_order).view_as(x)


def float32_recurrence(device_type: str) -> torch.autocast:
    """Autocast off: recurrences run in float32 under a bf16 training autocast (oneDNN has no bf16 LSTM on CPUs
    without bf16 units, and small recurrences gain nothing from it)."""
    return torch.autocast(device_type, enabled=False)


def run_bidirectional(rnn: nn.LSTM | nn.GRU, inputs: Tensor, lengths: Tensor) -> Tensor:
    """Run a ``batch_first`` bidirectional ``nn.LSTM`` / ``nn.GRU`` over the first ``lengths[n]`` steps of each
    row, without packing: the same outputs as :func:`run_packed`, several times faster to train on CPU.

    Each layer runs the forward direction's weights over the padded rows (padding comes after every real step,
    so it never reaches one) and the reverse direction's over each row reversed within its own length, through
    the fused unpacked kernels; packing makes PyTorch's CPU backward pass step through a slow per-step path
    (``benchmarks/article_model.py`` measures both). Dropout between layers is the module's ``dropout``, applied
    as ``nn.LSTM`` does (after every layer but the last, in training). The module's own parameters are used, so
    its state dict, and every run saved with it, is unchanged.

    Args:
        rnn: the bidirectional RNN (``batch_first``, no projections).
        inputs: ``(N, L, I)``.
        lengths: ``(N,)`` real steps per row (0 allowed: that row's output is all zeros).

    Returns:
        ``(N, L, 2 * H)`` outputs (forward then backward features), zero at steps ``>= lengths[n]``.
    """
    if not (rnn.bidirectional and rnn.batch_first) or rnn.proj_size:
        raise ValueError("run_bidirectional needs a bidirectional, batch_first RNN without projections")
    if torch.is_autocast_enabled(inputs.device.type):
        with float32_recurrence(inputs.device.type):
            return run_bidirectional(rnn, inputs.float(), lengths)
    reverse = WithinLengthReversal(lengths.to(inputs.device), inputs.shape[1])
    keep = reverse.real.unsqueeze(-1).to(inputs.dtype)  # (N, L, 1)
    zeros = inputs.new_zeros(1, inputs.shape[0], rnn.hidden_size)  # (1, N, H)
    x = inputs
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout > 0 and rnn.training:
            x = nn.functional.dropout(x, rnn.dropout, training=True)
        outputs = []
        for suffix, direction_inputs in (("", x), ("_reverse", reverse(x))):
            weights = [getattr(rnn, f"{kind}_l{layer}{suffix}") for kind in ("weight_ih", "weight_hh")]
            if rnn.bias:
                weights += [getattr(rnn, f"{kind}_l{layer}{suffix}") for kind in ("bias_ih", "bias_hh")]
            # torch.lstm returns (outputs, h, c), torch.gru (outputs, h): one layer, one direction, batch first.
            if isinstance(rnn, nn.LSTM):
                out = torch.lstm(
                    direction_inputs, (zeros, zeros), weights, rnn.bias, 1, 0.0, rnn.training, False, True
                )[0]
            else:
                out = torch.gru(
                    direction_inputs, zeros, weights, rnn.bias, 1, 0.0, rnn.training, False, True
                )[0]
            outputs.append(out)  # (N, L, H); the reverse direction's in reversed order
        ahead, behind = outputs
        x = torch.cat([ahead, reverse(behind)], dim=-1) * keep  # (N, L, 2H)
    return x


def init_recurrent_(rnn: nn.RNNBase) -> None:
    """Keras-style initialization: Xavier input weights, orthogonal recurrent weights (per gate), zero biases.

    An LSTM's forget-gate bias starts at 1 so the cell remembers by default (Jozefowicz et al. 2015).
    """
    hidden = rnn.hidden_size
    for name, param in rnn.named_parameters():
        if name.startswith("weight_ih"):
            for gate in param.data.split(hidden, dim=0):
                nn.init.xavier_uniform_(gate)
        elif name.startswith("weight_hh"):
            for gate in param.data.split(hidden, dim=0):
                nn.init.orthogonal_(gate)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if isinstance(rnn, nn.LSTM) and name.startswith("bias_ih"):
                param.data[hidden : 2 * hidden].fill_(1.0)  # gates are ordered (input, forget, cell, output)


class BidirectionalRNN(nn.Module):
    """A bidirectional RNN without packing: the backward RNN reads each row reversed within its own length.

    Padding sits after each row's real steps in both directions, so it never reaches a real step's output, as
    with packing; but the fused (unpacked) CPU kernels run. With packing a GRU falls back to a per-step path
    whose backward pass costs time quadratic in the number of steps.

    Args:
        input_size: features per step ``I``.
        hidden_size: units per direction ``H``.
        cell: ``nn.GRU`` (default), ``nn.LSTM`` or ``nn.RNN``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, cell: Callable[..., nn.RNNBase] = nn.GRU
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.forward_rnn = cell(input_size, hidden_size, batch_first=True)
        self.backward_rnn = cell(input_size, hidden_size, batch_first=True)
        init_recurrent_(self.forward_rnn)
        init_recurrent_(self.backward_rnn)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """``inputs (N, L, I)``, ``lengths (N,)`` -> ``(N, L, 2H)`` (forward then backward features), zero at
        steps ``>= lengths[n]``."""
        if torch.is_autocast_enabled(inputs.device.type):
            with float32_recurrence(inputs.device.type):
                return self.forward(inputs.float(), lengths)
        reverse = WithinLengthReversal(lengths.to(inputs.device), inputs.shape[1])
        ahead, _ = self.forward_rnn(inputs)  # (N, L, H)
        behind, _ = self.backward_rnn(reverse(inputs))  # (N, L, H), in reversed order
        return torch.cat([ahead, reverse(behind)], dim=-1) * reverse.real.unsqueeze(-1)  # (N, L, 2H)


class UnpackedBiLSTM(nn.Module):
    """A trained bidirectional ``nn.LSTM`` (``batch_first``) run without packing, for tracing.

    Each layer runs a forward LSTM over the inputs and a second LSTM (the reverse direction's weights) over
    each row reversed within its own length, then restores the order. Outputs are zero on padding, as
    :func:`attnkit.models.recurrent.run_packed` gives.

    Args:
        lstm: the trained bidirectional LSTM; its weights are copied.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if not (lstm.bidirectional and lstm.batch_first) or lstm.proj_size:
            raise ValueError("UnpackedBiLSTM needs a bidirectional, batch_first LSTM without projections")
        self.forward_rnns = nn.ModuleList()
        self.backward_rnns = nn.ModuleList()
        for layer in range(lstm.num_layers):
            input_size = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
            for suffix, rnns in (("", self.forward_rnns), ("_reverse", self.backward_rnns)):
                rnn = nn.LSTM(input_size, lstm.hidden_size, batch_first=True, bias=lstm.bias)
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    if hasattr(rnn, f"{kind}_l0"):
                        getattr(rnn, f"{kind}_l0").data.copy_(getattr(lstm, f"{kind}_l{layer}{suffix}").data)
                rnns.append(rnn)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """``inputs (B, T, I)``, ``lengths (B,)`` -> ``(B, T, 2H)``, zero at steps ``>= lengths[b]``."""
        steps = torch.arange(inputs.shape[1], device=inputs.device)  # (T,)
        lengths = lengths.unsqueeze(1)  # (B, 1)
        real = steps < lengths  # (B, T)
        # Reversal within the length is its own inverse; expand(-1, -1, n) keeps T symbolic when traced.
        order = torch.where(real, lengths - 1 - steps, steps).unsqueeze(-1)  # (B, T, 1)
        x = inputs
        for ahead_rnn, behind_rnn in zip(self.forward_rnns, self.backward_rnns, strict=True):
            ahead, _ = ahead_rnn(x)  # (B, T, H)
            behind, _ = behind_rnn(x.gather(1, order.expand(-1, -1, x.shape[-1])))  # (B, T, H), reversed
            behind = behind.gather(1, order.expand(-1, -1, behind.shape[-1]))  # (B, T, H)
            x = torch.cat([ahead, behind], dim=-1) * real.unsqueeze(-1)  # (B, T, 2H)
        return x
