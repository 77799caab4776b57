"""Convolutional LSTM cell of Ego-RNN.

Shi et al., "Convolutional LSTM Network" (NeurIPS 2015), in the form Sudhakaran & Lanz use
(BMVC 2018): no peepholes, one convolution per gate for the input and one for the hidden state,

    i_t  = sigmoid(W_xi * x_t + W_hi * h_{t-1} + b_i)
    f_t  = sigmoid(W_xf * x_t + W_hf * h_{t-1} + b_f)
    c~_t = tanh   (W_xc * x_t + W_hc * h_{t-1} + b_c)
    o_t  = sigmoid(W_xo * x_t + W_ho * h_{t-1} + b_o)
    c_t  = c~_t ⊙ i_t + c_{t-1} ⊙ f_t
    h_t  = o_t ⊙ tanh(c_t)

Only the x-convolutions carry the biases; weights are xavier-normal and biases zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GATES", "ConvLSTMCell"]

GATES = ("i", "f", "c", "o")
"""Gate names: input, forget, candidate cell, output."""


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step with ``hidden_channels`` channels and ``kernel_size`` square kernels."""

    def __init__(self, input_channels: int, hidden_channels: int = 512, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size: must be odd to keep the map size, got {kernel_size}")
        pad = kernel_size // 2
        self.hidden_channels = hidden_channels
        x_convs = {
            g: nn.Conv2d(input_channels, hidden_channels, kernel_size, padding=pad) for g in GATES
        }
        h_convs = {
            g: nn.Conv2d(hidden_channels, hidden_channels, kernel_size, padding=pad, bias=False)
            for g in GATES
        }
        for conv in [*x_convs.values(), *h_convs.values()]:
            nn.init.xavier_normal_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.x_convs, self.h_convs = nn.ModuleDict(x_convs), nn.ModuleDict(h_convs)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Input x_t (B, C_in, h, w) and state (h_{t-1}, c_{t-1}) -> (h_t, c_t), each (B, C, h, w).

        ``state=None`` starts from zeros.
        """
        if state is None:
            B, _, H, W = x.shape
            zeros = x.new_zeros(B, self.hidden_channels, H, W)
            state = (zeros, zeros)
        h_prev, c_prev = state
        pre = {g: self.x_convs[g](x) + self.h_convs[g](h_prev) for g in GATES}
        i, f, o = torch.sigmoid(pre["i"]), torch.sigmoid(pre["f"]), torch.sigmoid(pre["o"])
        c = torch.tanh(pre["c"]) * i + c_prev * f
        return o * torch.tanh(c), c
