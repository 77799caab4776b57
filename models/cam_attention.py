"""CAM spatial attention of Ego-RNN.

Zhou et al., "Learning Deep Features for Discriminative Localization" (CVPR 2016) class
activation maps, used as spatial attention by Sudhakaran & Lanz (BMVC 2018): the ImageNet class
the backbone ranks first selects a row of the backbone's FC; its dot product with the conv5
features at every position, softmax-normalised over the positions, weighs the features. The map is
computed on the BatchNorm features but applied to the features before the last BatchNorm and ReLU.

The module has no parameters: the class weights are the backbone FC's (trained in stage 2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CamAttention"]


class CamAttention(nn.Module):
    """Multiply the no-BN features by the softmax-normalised CAM of the winning ImageNet class."""

    def forward(
        self, logits: Tensor, features_bn: Tensor, features_nobn: Tensor, class_weights: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend to the winning class's evidence.

        Args:
            logits: ImageNet logits (N, K); only their argmax is used (not differentiable).
            features_bn: conv5 features after BatchNorm and ReLU (N, C, h, w), for the CAM.
            features_nobn: conv5 features before the last BatchNorm and ReLU (N, C, h, w).
            class_weights: the FC weight (K, C).

        Returns:
            The attended features (N, C, h, w) and the attention map (N, h, w), which sums to 1
            over the h*w positions of each frame.
        """
        N, _, H, W = features_bn.shape
        winner = logits.argmax(dim=1)  # (N,)
        cam = torch.einsum("nc,nchw->nhw", class_weights[winner], features_bn)  # (N, h, w)
        attention = torch.softmax(cam.flatten(1), dim=1).view(N, H, W)  # softmax over positions
        return features_nobn * attention.unsqueeze(1), attention
