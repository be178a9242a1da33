"""Plain network modules shared by the families.

Every family builds its experts from the same four pieces so that baselines and mixtures are
compared on identical networks (a requirement of the papers' comparisons):

    x [N, C, H, W] --ConvBody--> h [N, F] --GaussianHead--> (mu, logvar) [N, d] each
    z [N, d] --DecoderHead--> h [N, F] --DeconvBody--> logits [N, C, H, W]

The bodies are the "sub-encoder"/"sub-decoder" that L-MVAE-Dyn shares between experts (paper 000,
Sec. VI); the heads are the expert-specific parts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def feature_grid(size: int) -> int:
    """Spatial side of the feature map after two stride-2 convolutions (28 -> 7, 32 -> 8)."""
    return (size + 3) // 4


class ConvBody(nn.Module):
    """x [N, C, H, W] in [0, 1] -> features [N, channels * g * g] with g = feature_grid(H)."""

    def __init__(self, in_channels: int, size: int, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.out_features = channels * feature_grid(size) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A side that is not a multiple of 4 (size=30) is zero-padded around the centre to
        # 4 * feature_grid: the convolutions round down, the grid rounds up, and DeconvBody
        # crops the same centre back out of its output.
        extra = 4 * feature_grid(x.shape[-1]) - x.shape[-1]
        if extra:
            lo = extra // 2
            x = F.pad(x, (lo, extra - lo, lo, extra - lo))
        return self.net(x)


class GaussianHead(nn.Module):
    """features [N, F] -> (mu [N, d], logvar [N, d]) of a diagonal Gaussian posterior."""

    def __init__(self, in_features: int, latent_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim)
        )

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(h).chunk(2, dim=-1)
        # A bounded log-variance keeps exp() finite on odd inputs (uploaded images, NaN guards).
        return mu, logvar.clamp(-12.0, 8.0)


class DecoderHead(nn.Module):
    """z [N, d] -> features [N, F] for the deconvolution body."""

    def __init__(self, latent_dim: int, out_features: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_features), nn.ReLU()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DeconvBody(nn.Module):
    """features [N, channels * g * g] -> Bernoulli logits [N, C, H, W]."""

    def __init__(self, out_channels: int, size: int, channels: int = 32):
        super().__init__()
        self.channels, self.grid, self.size = channels, feature_grid(size), size
        self.net = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, out_channels, 4, 2, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.net(h.view(-1, self.channels, self.grid, self.grid))
        # 4 * grid can exceed the image side (e.g. 30 -> 32): crop the centre back to size.
        extra = out.shape[-1] - self.size
        if extra:
            lo = extra // 2
            out = out[..., lo : lo + self.size, lo : lo + self.size]
        return out


class VAEExpert(nn.Module):
    """One conv VAE. In L-MVAE-Dyn the bodies live on the mixture and are passed in at call time,
    so this module then holds only the expert-specific heads (paper 000, Sec. VI)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: int = 32,
        hidden: int = 128,
        own_bodies: bool = True,
    ):
        super().__init__()
        c, size, _ = image_shape
        features = channels * feature_grid(size) ** 2
        self.enc_body = ConvBody(c, size, channels) if own_bodies else None
        self.enc_head = GaussianHead(features, latent_dim, hidden)
        self.dec_head = DecoderHead(latent_dim, features, hidden)
        self.dec_body = DeconvBody(c, size, channels) if own_bodies else None

    def encode(self, x: torch.Tensor, body: nn.Module | None = None):
        return self.enc_head((body or self.enc_body)(x))

    def decode_logits(self, z: torch.Tensor, body: nn.Module | None = None) -> torch.Tensor:
        return (body or self.dec_body)(self.dec_head(z))


class ComponentEncoder(nn.Module):
    """x -> (mu [N, d], logvar [N, d], a [N]) of one MVAE component (paper 002, Alg. 1 l. 5):
    its encoder body, Gaussian head and Dirichlet head (a = softplus + a_min, capped at 1e3)
    held together, so the components can be batched with vmap (models/stacked.py)."""

    def __init__(self, body: nn.Module, head: nn.Module, dir_head: nn.Module, a_min: float):
        super().__init__()
        self.body, self.head, self.dir_head, self.a_min = body, head, dir_head, a_min

    def forward(self, x: torch.Tensor):
        h = self.body(x)
        mu, logvar = self.head(h)
        a = F.softplus(self.dir_head(h)).squeeze(-1) + self.a_min
        return mu, logvar, a.clamp(max=1e3)


class LGMNet(nn.Module):  # LGM (paper 001); cfg: an LGMConfig
    """One VAE of the student-teacher pair with J = `discrete_dim` categories.

    x [N, C, H, W] -> (logits [N, J], mu [N, d], logvar [N, d]); (z_d [N, J], z_c [N, d]) ->
    Bernoulli logits [N, C, H, W]. The decoder reads [z_c, z_d] so that growing z_d appends a
    column to its first layer."""

    def __init__(self, cfg, discrete_dim: int):
        super().__init__()
        c, size, _ = cfg.image_shape
        features = cfg.channels * feature_grid(size) ** 2
        self.discrete_dim = discrete_dim
        self.enc_body = ConvBody(c, size, cfg.channels)
        self.enc_head = GaussianHead(features, cfg.latent_dim, cfg.hidden)  # Q(z_c|x)
        self.disc_head = nn.Sequential(  # Q(z_d|x) as logits
            nn.Linear(features, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, discrete_dim)
        )
        self.dec_head = DecoderHead(cfg.latent_dim + discrete_dim, features, cfg.hidden)
        self.dec_body = DeconvBody(c, size, cfg.channels)

    def posterior(self, x: torch.Tensor):
        h = self.enc_body(x)
        mu, logvar = self.enc_head(h)
        return self.disc_head(h), mu, logvar

    def decode_logits(self, zd: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
        return self.dec_body(self.dec_head(torch.cat([zc, zd], dim=1)))


def grow(net: LGMNet, cfg, new_dim: int, init: str = "reinit") -> LGMNet:
    """A copy of `net` with `new_dim` >= J discrete categories (App. 9.8).

    Every weight is copied except the two layers around z_d: the last discrete-head layer
    [J, hidden] and the decoder's first layer [hidden, d + J]. init="reinit" (the paper's, App.
    9.8: the weights "immediately surrounding the projection into and out of the latent
    distribution ... are reinitialized to their standard Glorot initializations") draws both
    afresh (xavier-uniform, zero bias), so no category starts favoured as a decoder input.
    init="transfer" (not the paper's) copies their old rows/columns too and zero-pads the rest:
    for any old code the grown decoder's output is bit-identical to the old one, but the new
    code starts as the old decoder minus a bias, a worse input than the old code."""
    old_dim = net.discrete_dim
    new = LGMNet(cfg, new_dim).to(next(net.parameters()).device)
    head_out, dec_in = "disc_head.2", "dec_head.net.0"
    state = net.state_dict()
    with torch.no_grad():
        new.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith((head_out, dec_in))}, strict=False
        )
        out_layer, in_layer = new.disc_head[2], new.dec_head.net[0]
        if init == "reinit":
            for layer in (out_layer, in_layer):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        else:
            out_layer.weight[:old_dim] = state[f"{head_out}.weight"]
            out_layer.bias[:old_dim] = state[f"{head_out}.bias"]
            width = cfg.latent_dim + old_dim
            in_layer.weight.zero_()
            in_layer.weight[:, :width] = state[f"{dec_in}.weight"]
            in_layer.bias.copy_(state[f"{dec_in}.bias"])
    return new
