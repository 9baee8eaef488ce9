"""The FaceChannel (V1) in PyTorch: a light facial-expression network with shunting inhibition.

Architecture per ``../shared/docs/facechannel-facts.md`` (Barros, Churamani &
Sciutti, FG 2020), with ``width`` scaling every convolution's channel count
(``width=1`` is the paper's nch = 256):

* input: one grey channel, 64x64, NCHW;
* block 1: 2 x (3x3 conv 64 -> BN -> ReLU), max-pool 2, dropout 0.25;
* block 2: 2 x (3x3 conv 128 -> BN -> ReLU), max-pool 2, dropout 0.25;
* block 3: 3 x (3x3 conv 128 -> BN -> ReLU), max-pool 2, dropout 0.25;
* block 4: 2 x (3x3 conv 256 -> BN -> ReLU), then two parallel 3x3 convs of 256
  with ReLU on the same input, the excitatory map v and the inhibitory map u,
  combined by shunting inhibition v / (0.5 + u); max-pool 2, dropout 0.25;
* flatten (256 x 4 x 4 = 4096 at full width);
* dimensional head: dense 200 + ReLU (the 200-d *code* a person's memory learns
  on), then two dense-1 tanh outputs, arousal and valence;
* categorical head: dense 200 + ReLU, then one logit per class (AffectNet's
  eight, :data:`~affective_memory_ros.expressions.EXPRESSIONS`).

Convolutions and dense layers are Glorot-uniform initialised with zero biases
(Keras' defaults, as in the authors' code); batch norm uses Keras' momentum
(0.99) and epsilon (1e-3).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from torch import nn

from ..expressions import NUM_EXPRESSIONS

INPUT_SIZE = 64
#: nch of the paper; blocks use nch/4, nch/2, nch/2, nch channels.
PAPER_NCH = 256
#: The constant in the shunting inhibition v / (decay + u).
INHIBITION_DECAY = 0.5


@dataclass(frozen=True)
class FaceChannelConfig:
    #: Channel multiplier: 1.0 is the paper's network, 0.5 halves every convolution.
    width: float = 1.0
    #: Units of each head's hidden dense layer (the code size).
    dense: int = 200
    num_classes: int = NUM_EXPRESSIONS
    dropout: float = 0.25

    def __post_init__(self) -> None:
        if not (0.0 < self.width <= 4.0) or min(self.channels) < 4:
            raise ValueError(f"invalid FaceChannelConfig: width={self.width} (0 < width <= 4, >= 4 channels)")
        if self.dense < 1 or self.num_classes < 2 or not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"invalid FaceChannelConfig: dense={self.dense}, num_classes={self.num_classes}, "
                             f"dropout={self.dropout}")

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Channels of blocks 1-4: nch/4, nch/2, nch/2, nch with nch = 256 x width."""
        nch = PAPER_NCH * self.width
        return (round(nch / 4), round(nch / 2), round(nch / 2), round(nch))

    @property
    def flat_dim(self) -> int:
        return self.channels[3] * (INPUT_SIZE // 16) ** 2

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FaceChannelConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not a FaceChannelConfig: {text[:200]}")
        return cls(**data)


def shunting_inhibition(v: torch.Tensor, u: torch.Tensor, decay: float = INHIBITION_DECAY) -> torch.Tensor:
    """v / (decay + u): the excitatory map divided by the inhibitory one (both >= 0 after ReLU)."""
    return v / (decay + u)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True)]


class ShuntingBlock(nn.Module):
    """Block 4's end: parallel excitatory (v) and inhibitory (u) 3x3 convolutions with ReLU, v / (0.5 + u)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.excitatory = nn.Conv2d(channels, channels, 3, padding=1)
        self.inhibitory = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shunting_inhibition(torch.relu(self.excitatory(x)), torch.relu(self.inhibitory(x)))


class FaceChannel(nn.Module):
    """(N, 1, 64, 64) grey faces -> code (N, 200), (arousal, valence) (N, 2) in [-1, 1], logits (N, classes)."""

    def __init__(self, cfg: FaceChannelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FaceChannelConfig()
        c1, c2, c3, c4 = cfg.channels
        p = cfg.dropout
        self.features = nn.Sequential(
            *_conv_bn_relu(1, c1), *_conv_bn_relu(c1, c1), nn.MaxPool2d(2), nn.Dropout(p),
            *_conv_bn_relu(c1, c2), *_conv_bn_relu(c2, c2), nn.MaxPool2d(2), nn.Dropout(p),
            *_conv_bn_relu(c2, c3), *_conv_bn_relu(c3, c3), *_conv_bn_relu(c3, c3), nn.MaxPool2d(2), nn.Dropout(p),
            *_conv_bn_relu(c3, c4), *_conv_bn_relu(c4, c4), ShuntingBlock(c4), nn.MaxPool2d(2), nn.Dropout(p),
            nn.Flatten(),
        )
        self.dimensional = nn.Sequential(nn.Linear(cfg.flat_dim, cfg.dense), nn.ReLU())
        self.arousal = nn.Linear(cfg.dense, 1)
        self.valence = nn.Linear(cfg.dense, 1)
        self.categorical = nn.Sequential(nn.Linear(cfg.flat_dim, cfg.dense), nn.ReLU(),
                                         nn.Linear(cfg.dense, cfg.num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(code, av, logits): the dimensional head's hidden layer, tanh (arousal, valence), class logits."""
        if x.ndim != 4 or x.shape[1:] != (1, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (N, 1, {INPUT_SIZE}, {INPUT_SIZE}) input, got {tuple(x.shape)}")
        feats = self.features(x)
        code = self.dimensional(feats)
        av = torch.tanh(torch.cat([self.arousal(code), self.valence(code)], dim=1))
        return code, av, self.categorical(feats)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
