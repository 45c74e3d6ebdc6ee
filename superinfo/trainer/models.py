"""Encoders for the SuperInfo trainer: ResNet-18/50 (optionally with the CIFAR stem), a tiny 2-conv net for tests,
and ``SuperInfoModel`` = backbone + the stochastic projection head (``GaussianPosteriorHead``: MLP to 128 dims).

The ResNets reuse torchvision's ``BasicBlock``/``Bottleneck`` and its parameter names, so with ``width=64`` a
backbone's ``state_dict`` loads into ``torchvision.models.resnet18/50`` (``strict=False``: no ``fc``) for downstream
detection.  ``width`` scales every stage (64 -> 128 -> 256 -> 512 at width 64); small widths are for tests.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from mi_toolkit.errors import ArgumentError
from ..objective import GaussianPosterior, GaussianPosteriorHead

__all__ = ["ARCHS", "ResNet", "SuperInfoModel", "TinyConvNet", "build_backbone", "build_model"]

ARCHS = ("tiny", "resnet18", "resnet50")


class ResNet(nn.Module):
    """A torchvision-layout ResNet without the classifier: ``forward`` gives pooled features ``[N, feature_dim]``.

    ``cifar_stem``: 3x3 stride-1 first convolution and no max-pool (for 32x32 to 96x96 images), as in SimCLR's
    CIFAR experiments; otherwise the ImageNet 7x7 stride-2 stem with max-pool.
    """

    def __init__(self, block, layers, width: int = 64, cifar_stem: bool = False, zero_init_residual: bool = False):
        super().__init__()
        if width < 1:
            raise ArgumentError(f"width must be >= 1, got {width}")
        self.inplanes = width
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, 2 * width, layers[1], 2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], 2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 8 * width * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        # torchvision's Bottleneck widens by base_width/64; keep its middle width = planes
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class TinyConvNet(nn.Module):
    """Two 3x3 convolutions + BatchNorm + global pooling: the test-sized backbone (``--arch tiny``)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(arch: str, *, width: int | None = None, cifar_stem: bool = True) -> nn.Module:
    """``arch`` in ``ARCHS``; ``width`` defaults to 64 (ResNets) or 16 (tiny).  The module has ``feature_dim``."""
    if arch == "tiny":
        return TinyConvNet(16 if width is None else width)
    if arch == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], 64 if width is None else width, cifar_stem)
    if arch == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], 64 if width is None else width, cifar_stem)
    raise ArgumentError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")


class SuperInfoModel(nn.Module):
    """Backbone + stochastic projection head.  ``model(x)`` -> ``(features, GaussianPosterior)``; the posterior's
    mean/logvar are float32 even under autocast (the loss wants full precision).  ``encode(x)``: backbone features
    (what linear evaluation and kNN read)."""

    def __init__(self, backbone: nn.Module, head: GaussianPosteriorHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor):
        h = self.backbone(x)
        post = self.head(h)
        return h, GaussianPosterior(post.mean.float(), post.logvar.float())


def build_model(arch: str = "resnet18", *, width: int | None = None, cifar_stem: bool = True, z_dim: int = 128,
                head_hidden: int | None = None, head_layers: int = 1, sigma: float | str = 1.0,
                mean_on_sphere: bool = False) -> SuperInfoModel:
    """Backbone + ``GaussianPosteriorHead(feature_dim, z_dim, hidden=head_hidden or feature_dim, layers=head_layers,
    sigma=sigma)`` (the SimCLR projection MLP with a Gaussian output)."""
    backbone = build_backbone(arch, width=width, cifar_stem=cifar_stem)
    fd = backbone.feature_dim
    head = GaussianPosteriorHead(fd, z_dim, hidden=head_hidden or fd, layers=head_layers, sigma=sigma,
                                 mean_on_sphere=mean_on_sphere)
    return SuperInfoModel(backbone, head)
