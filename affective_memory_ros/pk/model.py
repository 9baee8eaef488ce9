"""The prior-knowledge adversarial autoencoder (PK) of P-AffMem.

E encodes a 96x96 RGB face in [-1, 1] into z (50-d, tanh). G decodes (z, y)
back into a face showing y = (arousal, valence). D_em reads (arousal, valence)
from z. D_prior pushes z towards a uniform prior; D_real judges (image, y)
pairs for photo-realism. Each discriminator can be switched off, which gives
the paper's ablations (base, +prior, +real, +em, pairs, all).

Architecture per the paper (``docs/pk.md``): E has four 5x5 stride-2
convolutions and one linear layer; G one linear layer and six 5x5 transposed
convolutions (four stride 2, two stride 1); D_em two linear layers (ReLU, then
tanh); D_prior four linear layers; D_real four 5x5 stride-2 convolutions with
y concatenated to the input of every one, then two linear layers. ``width``
sets the channel count (the paper's ~16M parameters is ``width=64``).

Ours, on top: an optional categorical head C on z (``num_classes``, 0 = none;
8 = :data:`~affective_memory_ros.expressions.EXPRESSIONS`), D_em's topology
with a softmax read-out, trained with cross-entropy on faces that carry an
expression label. Files written before it existed have no head and still load.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from torch import nn

IMAGE_SIZE = 96
LABEL_NAMES = ("arousal", "valence")


@dataclass(frozen=True)
class PKConfig:
    z_dim: int = 50
    #: Base channel count; E uses width, 2w, 4w, 8w.
    width: int = 64
    use_prior: bool = True
    use_real: bool = True
    use_em: bool = True
    #: Expression classes of the categorical head on z (0: no head, as in files before it existed).
    num_classes: int = 0

    def __post_init__(self) -> None:
        if self.z_dim < 1 or self.width < 4 or self.width % 4 or self.num_classes < 0:
            raise ValueError(f"invalid PKConfig: z_dim={self.z_dim}, width={self.width} (a multiple of 4, >= 4), "
                             f"num_classes={self.num_classes}")

    @property
    def name(self) -> str:
        parts = [n for n, on in (("prior", self.use_prior), ("real", self.use_real), ("em", self.use_em)) if on]
        return "all" if len(parts) == 3 else ("base" if not parts else "+" + "+".join(parts))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PKConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not a PKConfig: {text[:200]}")
        return cls(**data)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _deconv(cin: int, cout: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=stride, padding=2, output_padding=stride - 1)


class Encoder(nn.Module):
    def __init__(self, cfg: PKConfig) -> None:
        super().__init__()
        w = cfg.width
        self.convs = nn.Sequential(_conv(3, w), nn.ReLU(), _conv(w, 2 * w), nn.ReLU(), _conv(2 * w, 4 * w),
                                   nn.ReLU(), _conv(4 * w, 8 * w), nn.ReLU())
        self.fc = nn.Linear(8 * w * 6 * 6, cfg.z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(self.convs(x).flatten(1)))


class Generator(nn.Module):
    def __init__(self, cfg: PKConfig) -> None:
        super().__init__()
        w = cfg.width
        self.w = w
        self.fc = nn.Linear(cfg.z_dim + len(LABEL_NAMES), 8 * w * 6 * 6)
        self.deconvs = nn.Sequential(
            nn.ReLU(), _deconv(8 * w, 4 * w, 2), nn.ReLU(), _deconv(4 * w, 2 * w, 2), nn.ReLU(),
            _deconv(2 * w, w, 2), nn.ReLU(), _deconv(w, w // 2, 2), nn.ReLU(),
            _deconv(w // 2, w // 4, 1), nn.ReLU(), _deconv(w // 4, 3, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, y], dim=1)).view(-1, 8 * self.w, 6, 6)
        return self.deconvs(h)


class EmotionHead(nn.Module):
    """D_em: (arousal, valence) in [-1, 1] from z."""

    def __init__(self, cfg: PKConfig, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ClassHead(nn.Module):
    """C: expression logits from z (D_em's topology: linear, ReLU, linear); softmax gives probabilities."""

    def __init__(self, cfg: PKConfig, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, hidden), nn.ReLU(), nn.Linear(hidden, cfg.num_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PriorDiscriminator(nn.Module):
    """D_prior: logit that z was drawn from the uniform prior rather than from E."""

    def __init__(self, cfg: PKConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                                 nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


class RealismDiscriminator(nn.Module):
    """D_real: logit that (image, y) is a real face showing y. y enters every convolution
    as two constant maps (the label broadcast over the feature map)."""

    def __init__(self, cfg: PKConfig) -> None:
        super().__init__()
        w = cfg.width
        chans = [3, w, 2 * w, 4 * w, 8 * w]
        self.convs = nn.ModuleList(_conv(chans[i] + 2, chans[i + 1]) for i in range(4))
        self.fc = nn.Sequential(nn.Linear(8 * w * 6 * 6, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            maps = y[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
            h = nn.functional.leaky_relu(conv(torch.cat([h, maps], dim=1)), 0.2)
        return self.fc(h.flatten(1)).squeeze(1)


class PK(nn.Module):
    """The whole PK; discriminators exist only when switched on."""

    def __init__(self, cfg: PKConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.generator = Generator(cfg)
        # D_em is also the reader of arousal/valence at inference. Without use_em it is
        # not trained with the autoencoder; evaluation post-trains it on frozen z (as the paper does).
        self.emotion = EmotionHead(cfg)
        self.prior = PriorDiscriminator(cfg) if cfg.use_prior else None
        self.real = RealismDiscriminator(cfg) if cfg.use_real else None
        self.apply(init_weights)
        # Built and initialised last, so the other parts draw the same initial weights with or without it.
        self.classifier = ClassHead(cfg) if cfg.num_classes else None
        if self.classifier is not None:
            self.classifier.apply(init_weights)

    def edit(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Faces x re-rendered to show (arousal, valence) y."""
        return self.generator(self.encoder(x), y)


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: weights N(0, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())
