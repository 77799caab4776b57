"""The ConvLSTM cell against the report's equations, and its initialisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models import ConvLSTMCell


def _gate(cell: ConvLSTMCell, gate: str, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    wx, bx = cell.x_convs[gate].weight, cell.x_convs[gate].bias
    wh = cell.h_convs[gate].weight
    return F.conv2d(x, wx, bx, padding=1) + F.conv2d(h, wh, padding=1)


def test_two_steps_follow_the_equations():
    torch.manual_seed(0)
    cell = ConvLSTMCell(6, 4)
    for conv in cell.x_convs.values():  # non-zero biases so that they are checked too
        torch.nn.init.normal_(conv.bias)
    xs = torch.randn(2, 3, 6, 5, 5)  # (T, B, C, h, w)
    h = c = torch.zeros(3, 4, 5, 5)
    state = None
    for x in xs:
        i = torch.sigmoid(_gate(cell, "i", x, h))
        f = torch.sigmoid(_gate(cell, "f", x, h))
        c_tilde = torch.tanh(_gate(cell, "c", x, h))
        o = torch.sigmoid(_gate(cell, "o", x, h))
        c = c_tilde * i + c * f
        h = o * torch.tanh(c)
        state = cell(x, state)
    torch.testing.assert_close(state[0], h)
    torch.testing.assert_close(state[1], c)


def test_only_input_convolutions_have_biases_and_they_start_at_zero():
    cell = ConvLSTMCell(8, 8)
    assert all(conv.bias is None for conv in cell.h_convs.values())
    assert all(torch.count_nonzero(conv.bias) == 0 for conv in cell.x_convs.values())


def test_weights_are_xavier_normal():
    torch.manual_seed(0)
    cell = ConvLSTMCell(64, 64)
    expected = math.sqrt(2.0 / (64 * 9 + 64 * 9))
    for conv in [*cell.x_convs.values(), *cell.h_convs.values()]:
        assert abs(conv.weight.std().item() / expected - 1) < 0.05
        assert conv.weight.shape == (64, 64, 3, 3)


def test_parameter_count_is_eight_convolutions_and_four_biases():
    cell = ConvLSTMCell(512, 512)
    assert sum(p.numel() for p in cell.parameters()) == 8 * 512 * 512 * 9 + 4 * 512
