"""Representation flow: TV-L1 optical-flow iterations unrolled on CNN feature maps.

Piergiovanni & Ryoo, "Representation Flow for Action Recognition" (CVPR 2019), built on the
TV-L1 dual algorithm of Zach, Pock & Bischof (DAGM 2007). For each channel of two consecutive
feature maps I0, I1 (rescaled to [0, 255]) the flow u = (u1, u2) and the dual fields p1, p2 start
at zero and every iteration does

    ρ   = I1 - I0 + ∇I1 · u                        (linearised brightness residual)
    v   = u + λθ ∇I1              if ρ < -λθ |∇I1|²
          u - λθ ∇I1              if ρ >  λθ |∇I1|²
          u - ρ ∇I1 / |∇I1|²      otherwise          (thresholding step of the data term)
    u_d = v_d + θ div(p_d)                          (d = 1, 2)
    p_d = (p_d + (τ/θ) ∇u_d) / (1 + (τ/θ) |∇u_d|)   (projected dual ascent of the TV term)

θ, λ, τ and the derivative kernels are learnt. The image gradient is a central difference
[-0.5, 0, 0.5]; the flow gradient a forward difference and the divergence a backward difference
(its negative adjoint), both [-1, 1] at initialisation. Kernels are per channel (depthwise), so
each channel is its own image. The layer wraps the iterations in a 1x1x1 bottleneck to 32
channels, a 1x1x1 expansion of the 2x32 flow channels back to C, BatchNorm and a residual:
``relu(x[:, :, :-1] + bn(expand(flow)))``, one time step fewer than its input.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RepresentationFlow", "TVL1Flow"]

_EPS = 1e-6


def _depthwise_kernel(channels: int, values: list[float], vertical: bool) -> nn.Parameter:
    taps = torch.tensor(values)
    kernel = taps.view(-1, 1) if vertical else taps.view(1, -1)  # (kh, kw)
    return nn.Parameter(kernel.expand(channels, 1, *kernel.shape).clone())  # (C, 1, kh, kw)


class TVL1Flow(nn.Module):
    """``iterations`` learnable TV-L1 steps between two stacks of C-channel images."""

    def __init__(self, channels: int, iterations: int = 10) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"repflow_iters: must be >= 1, got {iterations}")
        self.iterations = iterations
        self.theta = nn.Parameter(torch.tensor(0.3))
        self.lam = nn.Parameter(torch.tensor(0.15))
        self.tau = nn.Parameter(torch.tensor(0.25))
        self.image_grad_x = _depthwise_kernel(channels, [-0.5, 0.0, 0.5], vertical=False)
        self.image_grad_y = _depthwise_kernel(channels, [-0.5, 0.0, 0.5], vertical=True)
        self.flow_grad_x = _depthwise_kernel(channels, [-1.0, 1.0], vertical=False)
        self.flow_grad_y = _depthwise_kernel(channels, [-1.0, 1.0], vertical=True)
        self.div_x = _depthwise_kernel(channels, [-1.0, 1.0], vertical=False)
        self.div_y = _depthwise_kernel(channels, [-1.0, 1.0], vertical=True)

    def forward(self, i0: Tensor, i1: Tensor) -> tuple[Tensor, Tensor]:
        """Images i0, i1 (N, C, H, W), values about [0, 255] -> flow (u1, u2), each (N, C, H, W);
        u1 is horizontal (towards +W), u2 vertical (towards +H)."""
        groups = i1.shape[1]
        gx = F.conv2d(F.pad(i1, (1, 1, 0, 0), mode="replicate"), self.image_grad_x, groups=groups)
        gy = F.conv2d(F.pad(i1, (0, 0, 1, 1), mode="replicate"), self.image_grad_y, groups=groups)
        grad_sq = gx * gx + gy * gy + _EPS
        residual0 = i1 - i0
        lt, tau_theta = self.lam * self.theta, self.tau / self.theta
        u1, u2 = torch.zeros_like(i1), torch.zeros_like(i1)
        p11, p12, p21, p22 = (torch.zeros_like(i1) for _ in range(4))
        for _ in range(self.iterations):
            rho = residual0 + gx * u1 + gy * u2
            step = torch.where(
                rho < -lt * grad_sq, lt, torch.where(rho > lt * grad_sq, -lt, -rho / grad_sq)
            )
            u1 = u1 + step * gx + self.theta * self._divergence(p11, p12)
            u2 = u2 + step * gy + self.theta * self._divergence(p21, p22)
            u1x, u1y = self._gradient(u1)
            u2x, u2y = self._gradient(u2)
            norm1 = 1 + tau_theta * torch.sqrt(u1x * u1x + u1y * u1y + _EPS)
            norm2 = 1 + tau_theta * torch.sqrt(u2x * u2x + u2y * u2y + _EPS)
            p11, p12 = (p11 + tau_theta * u1x) / norm1, (p12 + tau_theta * u1y) / norm1
            p21, p22 = (p21 + tau_theta * u2x) / norm2, (p22 + tau_theta * u2y) / norm2
        return u1, u2

    def _gradient(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Forward differences of u (N, C, H, W); zero on the last column / row (Neumann)."""
        groups = u.shape[1]
        dx = F.pad(F.conv2d(u, self.flow_grad_x, groups=groups), (0, 1, 0, 0))
        dy = F.pad(F.conv2d(u, self.flow_grad_y, groups=groups), (0, 0, 0, 1))
        return dx, dy

    def _divergence(self, px: Tensor, py: Tensor) -> Tensor:
        """Backward-difference divergence of (px, py), each (N, C, H, W), matching _gradient."""
        groups = px.shape[1]
        # p is zero before the first column and from the last column on, so pad the cut field
        dx = F.conv2d(F.pad(px[..., :-1], (1, 1, 0, 0)), self.div_x, groups=groups)
        dy = F.conv2d(F.pad(py[..., :-1, :], (0, 0, 1, 1)), self.div_y, groups=groups)
        return dx + dy


class RepresentationFlow(nn.Module):
    """Flow-of-features layer: (B, C, T, H, W) -> (B, C, T-1, H, W)."""

    def __init__(self, channels: int, bottleneck: int = 32, iterations: int = 10) -> None:
        super().__init__()
        self.bottleneck = nn.Conv3d(channels, bottleneck, kernel_size=1, bias=False)
        self.tvl1 = TVL1Flow(bottleneck, iterations)
        self.expand = nn.Conv3d(2 * bottleneck, channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, C, T, H, W), T >= 2 -> flow representation (B, C, T-1, H, W)."""
        B, _, T, _, _ = x.shape
        if T < 2:
            raise ValueError(f"representation flow needs at least 2 time steps, got {T}")
        reduced = self.bottleneck(x)  # (B, K, T, H, W)
        with _full_precision(x.device.type):  # ten iterations of divisions need it
            images = _to_pixel_range(reduced.to(self.tvl1.theta.dtype))
            steps = images.permute(0, 2, 1, 3, 4)  # (B, T, K, H, W)
            i0, i1 = steps[:, :-1].flatten(0, 1), steps[:, 1:].flatten(0, 1)  # (B*(T-1), K, H, W)
            u1, u2 = self.tvl1(i0, i1)
        flow = torch.cat([u1, u2], dim=1).unflatten(0, (B, T - 1))  # (B, T-1, 2K, H, W)
        flow = flow.permute(0, 2, 1, 3, 4)  # (B, 2K, T-1, H, W)
        return F.relu(x[:, :, :-1] + self.bn(self.expand(flow)))


def _full_precision(device_type: str) -> AbstractContextManager[Any]:
    """Turn autocast off where it is on (bf16 training), else change nothing."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast (meta)
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else nullcontext()


def _to_pixel_range(x: Tensor) -> Tensor:
    """Rescale each sample of x (B, ...) to [0, 255], the range θ, λ, τ are set for."""
    flat = x.flatten(1)
    low = flat.min(dim=1).values.view(-1, *[1] * (x.dim() - 1))
    high = flat.max(dim=1).values.view(-1, *[1] * (x.dim() - 1))
    return 255 * (x - low) / (high - low).clamp_min(_EPS)
