"""MVAE: mixture of VAE components with one mix-decoder (Ye & Bors, Deep Mixture Generative
Autoencoders, TNNLS 2022; paper 002 in shared/seeds).

Each component i has an encoder E_i: x -> (mu_i, sigma_i, a_i) (Sec. IV-A) and a single-layer
sub-decoder t_i: z_i -> s_i. Mixing weights w ~ Dir(a_1..a_K) are drawn with implicit
reparameterisation gradients (eq. 26; torch's Dirichlet.rsample implements them), optionally
masked by a component dropout m (eq. 16), and the mix-decoder reconstructs x from
s = sum_i b_i s_i (eqs. 4-6, 17). The objective is the MELBO (eq. 9) plus beta * dHSIC between
the components' codes (eq. 15), the Dirichlet KL (eq. 28) and the dropout term: the entropy of
a learnable dropout rate for MVAE-GS (eqs. 22-24) or the variational-dropout KL for MVAE-Gau
(eqs. 18-19). Components whose dropout passes Sec. V-G's threshold are pruned for good; the
dropout schemes (masks, terms, keep scores, thresholds) and the pruning of a component
(dropout.ComponentDropout, a mixin) are in dropout.py.

Networks (shared with every family, nets.py): encoder = ConvBody + GaussianHead, plus a linear
Dirichlet head on the conv features; sub-decoder t_i = Linear(latent_dim, hidden) + ReLU (the
paper's "single layer" mapping into the mix-decoder's input); mix-decoder = DecoderHead(hidden)
+ DeconvBody, i.e. a VAE decoder whose input is the mixed s instead of z.

Readings chosen where the paper is loose (each is also noted where it lives):
- Likelihood: Bernoulli (as every family here) rather than eq. 29's MSE, so score() is an ELBO
  in nats comparable across families.
- KL of the codes summed over components (eqs. 8, 30, 31) rather than eq. 9's 1/K average, so
  score() is a true lower bound on log p(x).
- One dropout rate per component (the "network nu inferring the dropout parameters for the
  components", eq. 32) and one mask per sample and component; epoch_stats reports their mean
  as Fig. 15's p. Eq. 22 as printed has log(1 - p) in both terms; the drop term is log p.
- dHSIC on the posterior means with a bandwidth floor (see `independence`); pruning after
  half a phase on the expected keep mask, or on a sampled one (prune_score; dropout.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lifelong import events as ev
from lifelong import hsic, losses
from lifelong.models import dropout as cdrop
from lifelong.models import stacked
from lifelong.models.base import Capabilities, Codes, GenerativeModel, LatentBlock, Posterior
from lifelong.models.nets import (
    ComponentEncoder,
    ConvBody,
    DecoderHead,
    DeconvBody,
    GaussianHead,
    feature_grid,
)

A_MIN = 0.05  # floor of the Dirichlet concentrations: keeps rsample and its gradient finite


@dataclass
class MVAEConfig:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1
    n_components: int = 4  # K (MNIST, Sec. V-A); Figs. 12-16 and Table VI start at 6
    latent_dim: int = 10
    channels: int = 32
    hidden: int = 128
    lr: float = 1e-3
    beta: float = 1.0  # eq. 15 weight of dHSIC (Sec. V: beta = 1; Fig. 12 also 10)
    hsic_form: str = "joint"  # "joint": dHSIC of all K (eq. 15); "pairwise": sum of pairs (eq. 11)
    hsic_codes: str = "mean"  # dHSIC of the posterior means (default) or of sampled codes
    hsic_min_bandwidth: float = 0.3  # kernel bandwidth floor of the regulariser (latent units)
    # Median heuristic of the regulariser's kernels: "distance" (the median distance; what runs
    # without this field were trained with) or "dhsic" (R dHSIC's, 1/sqrt(2) of it): hsic.py
    hsic_bandwidth: str = "distance"
    prior_concentration: float = 1.0  # b of eq. 28, symmetric (the "empirical Dirichlet" p(w))
    dropout: str = "none"  # "none" (fixed K) | "gs": MVAE-GS (eqs. 22-24) | "gau": MVAE-Gau (18-19)
    dropout_init: float = 0.1  # initial dropout rate p of every component
    temperature: float = 0.1  # T of eq. 22 (Sec. III-D)
    dropout_weight: float = 1.0  # weight of H(p) (eq. 24) or KL(q(m)||p(m)) (eq. 18) per image
    prune_threshold: float = -1.0  # on the keep score; < 0: dropout.THRESHOLDS
    prune_score: str = "expected"  # gs: "expected" mask 1 - p vs 0.6 | "sampled" eq. 22 vs 0.1
    min_components: int = 1  # pruning never goes below this
    prune_start: float = 0.5  # fraction of a phase's training before pruning may act
    sequential: bool = False  # one task per phase (shows forgetting) instead of the union
    expert_batching: str = "auto"  # components in one vmapped call or a loop (stacked.py)

    def validate(self) -> None:
        if self.dropout not in cdrop.SCHEMES:
            raise ValueError(f"dropout must be 'none', 'gs' or 'gau', not {self.dropout!r}")
        if self.hsic_form not in ("joint", "pairwise"):
            raise ValueError(f"hsic_form must be 'joint' or 'pairwise', not {self.hsic_form!r}")
        if self.hsic_codes not in ("mean", "sample"):
            raise ValueError(f"hsic_codes must be 'mean' or 'sample', not {self.hsic_codes!r}")
        hsic.check_heuristic(self.hsic_bandwidth, "hsic_bandwidth")
        cdrop.check_score(self.prune_score)
        if self.n_components < 1 or not 1 <= self.min_components <= self.n_components:
            raise ValueError("need n_components >= 1 and 1 <= min_components <= n_components")
        hi = 0.5 if self.dropout == "gau" else 1.0  # Gau: tau = p / (1 - p) <= 1 (eq. 19)
        if not 0 < self.dropout_init < hi or self.temperature <= 0:
            raise ValueError(f"need 0 < dropout_init < {hi} and temperature > 0")
        if not 0 <= self.prune_start <= 1:
            raise ValueError(f"prune_start must be in [0, 1], not {self.prune_start}")
        if min(self.beta, self.dropout_weight, self.hsic_min_bandwidth) < 0:
            raise ValueError("need beta, dropout_weight and hsic_min_bandwidth >= 0")
        if self.prior_concentration <= 0:
            raise ValueError(f"need prior_concentration > 0, not {self.prior_concentration}")
        stacked.resolve(self.expert_batching, torch.device("cpu"))  # a valid name
        if min(self.latent_dim, self.channels, self.hidden, self.n_tasks) < 1:
            raise ValueError("latent_dim, channels, hidden and n_tasks must be >= 1")


class MVAE(cdrop.ComponentDropout, GenerativeModel):
    family = "mvae"
    config_cls = MVAEConfig
    capabilities = Capabilities(mixture=True)

    def __init__(self, config: MVAEConfig, arch: dict | None = None):
        super().__init__(config)
        config.validate()
        cfg = config
        c, size, _ = cfg.image_shape
        k, d, h = cfg.n_components, cfg.latent_dim, cfg.hidden
        features = cfg.channels * feature_grid(size) ** 2
        self.enc_bodies = nn.ModuleList(ConvBody(c, size, cfg.channels) for _ in range(k))
        self.enc_heads = nn.ModuleList(GaussianHead(features, d, h) for _ in range(k))
        self.dir_heads = nn.ModuleList(nn.Linear(features, 1) for _ in range(k))
        sub = (nn.Sequential(nn.Linear(d, h), nn.ReLU()) for _ in range(k))  # t_i, one layer
        self.sub_decoders = nn.ModuleList(sub)
        self.mix_head = DecoderHead(h, features, h)
        self.mix_body = DeconvBody(c, size, cfg.channels)
        # nu of eq. 32: one dropout logit per component (dropout.py)
        nu = cdrop.initial_logit(cfg.dropout, cfg.dropout_init)
        self.drop_logit = nn.Parameter(torch.full((k,), nu))
        self.drop_logit.requires_grad_(cfg.dropout != "none")
        self.register_buffer("active", torch.ones(k, dtype=torch.bool))
        # Batch-averaged Dirichlet means seen in training: the weights decode() mixes codes
        # with when no image gives them (traversals, prior codes).
        self.register_buffer("mix_weights", torch.full((k,), 1.0 / k))
        self._pruned: list[ev.Event] = []  # pruning events of the current phase, for after_task
        self._task = 0  # the phase's task: pruning events are tagged with it
        self._epoch = 0

    # -- structure -----------------------------------------------------------------------
    def component_modules(self) -> tuple[nn.ModuleList, ...]:
        """Per-component modules (dropout.ComponentDropout freezes a pruned one's)."""
        return (self.enc_bodies, self.enc_heads, self.dir_heads, self.sub_decoders)

    def experts(self) -> list[int]:
        """Ids of the active components (pruned ones keep their id but leave the mixture)."""
        return self.active.nonzero().flatten().tolist()

    def latent_blocks(self) -> list[LatentBlock]:
        return [LatentBlock(f"z{k}", self.config.latent_dim, "gaussian", k) for k in self.experts()]

    def training_phases(self, n_tasks: int) -> list[list[int]]:
        """MVAE is trained on the union of its tasks (one snapshot); sequential=True trains one
        task per phase, to show its forgetting beside the lifelong families."""
        if self.config.sequential:
            return super().training_phases(n_tasks)
        return [list(range(n_tasks))]

    # -- per-component pieces ------------------------------------------------------------
    def _encoder(self, k: int) -> ComponentEncoder:
        return ComponentEncoder(self.enc_bodies[k], self.enc_heads[k], self.dir_heads[k], A_MIN)

    def _encode(self, k: int, x: torch.Tensor):
        """x -> (mu [N, d], logvar [N, d], a [N]) of component k (Alg. 1 l. 5)."""
        return self._encoder(k)(x)

    def _batched(self, ks: list[int], x: torch.Tensor) -> bool:
        mode = stacked.resolve(self.config.expert_batching, x.device, len(ks))
        return mode == "vmap" and len(ks) > 1

    def _encode_all(self, ks: list[int], x: torch.Tensor) -> list[tuple]:
        """_encode of every component in ks: a loop, or one vmapped call (stacked.py)."""
        if not self._batched(ks, x):
            return [self._encode(k, x) for k in ks]
        mu, logvar, a = stacked.vcall([self._encoder(k) for k in ks], x, in_dims=(None,))
        return list(zip(mu, logvar, a, strict=True))

    def _sub_decode_all(self, ks: list[int], z: list[torch.Tensor]) -> list[torch.Tensor]:
        """t_k(z_k) [N, hidden] of every component in ks (eq. 4's sub-decoders)."""
        if not self._batched(ks, z[0]):
            return [self.sub_decoders[k](zk) for k, zk in zip(ks, z, strict=True)]
        subs = [self.sub_decoders[k] for k in ks]
        return list(stacked.vcall(subs, torch.stack(z), in_dims=(0,)))

    def _mix_logits(self, s: list[torch.Tensor], b: torch.Tensor) -> torch.Tensor:
        """s: sub-decoder outputs [N, hidden] each, b [N, len(s)] their weights -> logits."""
        mixed = (torch.stack(s, dim=1) * b[..., None]).sum(dim=1)  # eqs. 4, 17
        return self.mix_body(self.mix_head(mixed))  # eq. 6

    def _one_logits(self, k: int, z: torch.Tensor) -> torch.Tensor:
        """Component k alone (b = one-hot k): Figs. 2b-e and 17."""
        return self.mix_body(self.mix_head(self.sub_decoders[k](z)))

    def _weights(self, ks: list[int], n: int, device) -> torch.Tensor:
        w = self.mix_weights[ks].clamp_min(1e-8)
        return (w / w.sum()).to(device).expand(n, -1)

    # -- inference -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        ks = self.experts() if expert is None else [expert]
        out = {}
        for k in ks:
            mu, logvar, _ = self._encode(k, x)
            out[f"z{k}"] = {"mu": mu, "logvar": logvar}
        return out

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        """Through component `expert`'s sub-decoder (its code z{expert} only), or, with the codes
        of every active component, through the mixture (eq. 34) weighted by codes["w"] [N, K']
        if given, else by the mean mixing weights seen in training."""
        names = [n for n in codes if n != "w"]
        if expert is None and len(names) == 1:
            expert = int(names[0][1:])
        if expert is not None:
            return torch.sigmoid(self._one_logits(expert, codes[f"z{expert}"]))
        ks = self.experts()
        if set(names) != {f"z{k}" for k in ks}:
            raise ValueError("decode: give one component's code, or the codes of every active one")
        s = [self.sub_decoders[k](codes[f"z{k}"]) for k in ks]
        n = s[0].shape[0]
        w = codes["w"] if "w" in codes else self._weights(ks, n, s[0].device)
        return torch.sigmoid(self._mix_logits(s, w))

    def _mean_weights(self, a: torch.Tensor) -> torch.Tensor:
        return a / a.sum(dim=1, keepdim=True)  # E[w] under Dir(a)

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Posterior means through the mixture, weighted by the Dirichlet means (no dropout),
        or through component `expert` alone."""
        if expert is not None:
            mu, _, _ = self._encode(expert, x)
            return torch.sigmoid(self._one_logits(expert, mu))
        ks = self.experts()
        enc = [self._encode(k, x) for k in ks]
        a = torch.stack([e[2] for e in enc], dim=1)
        s = [self.sub_decoders[k](e[0]) for k, e in zip(ks, enc, strict=True)]
        return torch.sigmoid(self._mix_logits(s, self._mean_weights(a)))

    def decode_mismatched(self, x: torch.Tensor, enc: int, dec: int) -> torch.Tensor:
        """Encoder `enc`'s posterior mean through sub-decoder `dec` (Figs. 3, 7; eq. 36's pairs)."""
        mu, _, _ = self._encode(enc, x)
        return torch.sigmoid(self._one_logits(dec, mu))

    def interpolate(
        self, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8, shift: int = 0
    ) -> torch.Tensor:
        """Interpolation through every component (eqs. 33-35): x0, x1 [1, C, H, W] -> [steps,
        C, H, W]. d_i = (1 - a) E_i(x0) + a E_i(x1) on the posterior means, c = sum_i w_i
        t_i(d_i), x' = MixDec(c); w moves linearly between the two inputs' Dirichlet means, so
        the end frames are the reconstructions. shift=j != 0 feeds sub-decoder i the path of
        encoder i + j (mod K): the mismatched eq. 36."""
        ks = self.experts()
        t = torch.linspace(0, 1, steps, device=x0.device)[:, None]
        e0 = [self._encode(k, x0) for k in ks]
        e1 = [self._encode(k, x1) for k in ks]
        d = [(1 - t) * a[0] + t * b[0] for a, b in zip(e0, e1, strict=True)]  # eq. 33
        w0 = self._mean_weights(torch.stack([e[2] for e in e0], dim=1))
        w1 = self._mean_weights(torch.stack([e[2] for e in e1], dim=1))
        w = (1 - t) * w0 + t * w1
        n = len(ks)
        s = [self.sub_decoders[k](d[(i + shift) % n]) for i, k in enumerate(ks)]  # eq. 34/36
        return torch.sigmoid(self._mix_logits(s, w))  # eq. 35

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """z ~ N(0, I) through component `expert` (Fig. 17), or every active component mixed by
        w ~ Dir(b), the generative process of eqs. 2-6."""
        dev, d = self.device, self.config.latent_dim
        if expert is not None:
            return torch.sigmoid(self._one_logits(expert, torch.randn(n, d, device=dev)))
        ks = self.experts()
        s = [self.sub_decoders[k](torch.randn(n, d, device=dev)) for k in ks]
        b = torch.full((n, len(ks)), self.config.prior_concentration, device=dev)
        return torch.sigmoid(self._mix_logits(s, torch.distributions.Dirichlet(b).sample()))

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """One-sample ELBO per sample (nats) of the mixture (eq. 8, no dropout), or of component
        `expert` alone: log p(x | t_k(z_k)) - KL_k."""
        return -self._terms(x, expert=expert, dropout=False)["nelbo"]

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Mixing weights per sample, the mean of Dir(a(x)): [N, K], 0 for pruned components."""
        ks = self.experts()
        a = torch.stack([self._encode(k, x)[2] for k in ks], dim=1)
        out = torch.zeros(len(x), self.config.n_components, device=x.device)
        out[:, ks] = self._mean_weights(a)
        return out

    # -- training ------------------------------------------------------------------------
    def _terms(self, x: torch.Tensor, expert: int | None = None, dropout: bool = True) -> dict:
        """Per-sample terms [N] and batch terms (scalars) of the objective."""
        if expert is not None:
            mu, logvar, _ = self._encode(expert, x)
            z = losses.reparameterise(mu, logvar)
            rec = losses.bernoulli_log_likelihood(self._one_logits(expert, z), x)
            kl = losses.gaussian_kl(mu, logvar)
            return {"nelbo": kl - rec, "rec": -rec, "kl": kl}
        ks = self.experts()
        enc = self._encode_all(ks, x)
        z = [losses.reparameterise(mu, lv) for mu, lv, _ in enc]  # eq. 25
        a = torch.stack([e[2] for e in enc], dim=1)  # [N, K']
        w = torch.distributions.Dirichlet(a).rsample()  # eq. 26, implicit reparameterisation
        b = w
        if dropout and self.config.dropout != "none":
            mw = self._masks(ks, len(x)) * w
            b = mw / mw.sum(dim=1, keepdim=True).clamp_min(1e-8)  # eq. 16
        s = self._sub_decode_all(ks, z)
        rec = losses.bernoulli_log_likelihood(self._mix_logits(s, b), x)
        # Eqs. 8, 30, 31: the KL of the joint posterior, i.e. summed over components (eq. 9's
        # 1/K average would not bound log p(x)).
        kl = torch.stack([losses.gaussian_kl(mu, lv) for mu, lv, _ in enc]).sum(0)
        prior = torch.full_like(a, self.config.prior_concentration)
        kl_w = losses.dirichlet_kl(a, prior)  # eq. 28
        codes = z if self.config.hsic_codes == "sample" else [mu for mu, _, _ in enc]
        return {
            "nelbo": kl + kl_w - rec,
            "rec": -rec,
            "kl": kl,
            "kl_w": kl_w,
            "codes": codes,
            "a": a,
        }

    def independence(self, z: list[torch.Tensor]) -> torch.Tensor:
        """r(z) of eq. 10: dHSIC(z_1..z_K) (eq. 15) or the sum of pairwise HSIC (eq. 11) of the
        components' codes [N, d] each.

        Codes are the posterior means by default: z_i and z_j are independent given x, so all
        their dependence goes through the means (on sampled codes the encoders lowered dHSIC by
        inflating the noise; beta = 10 changed nothing). Bandwidths: the median heuristic
        (hsic_bandwidth: "distance" unless set; docs/readings.md), floored at
        hsic_min_bandwidth: HSIC is scale-free, and without the floor beta = 10
        collapsed every component to a constant code (KL 0.01 nats). With 0.3 it cut the
        pairwise HSIC 2-4x at a reconstruction cost that shrinks with training (figures in
        tests/models/test_mvae.py). The pairwise form (eq. 11) cost more for no lasting gain,
        so eq. 15's joint dHSIC is the default."""
        if len(z) < 2:
            return torch.zeros((), device=z[0].device)
        floor = self.config.hsic_min_bandwidth
        bw = hsic.median_bandwidths(z, self.config.hsic_bandwidth).clamp_min(floor)  # [K]
        if self.config.hsic_form == "joint":
            return hsic.dhsic(z, bw)
        m = hsic.hsic_matrix(z, bw, joint=False).matrix
        return m.sum() - m.diagonal().sum()

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        """Eq. 24 (gs), eq. 18 (gau) or eq. 15 (none), batch-averaged."""
        cfg = self.config
        t = self._terms(batch["x"])
        reg = self.independence(t["codes"])
        out = {
            "rec": t["rec"].mean(),
            "kl": t["kl"].mean(),
            "kl_w": t["kl_w"].mean(),
            "dhsic": reg.detach(),
        }
        total = t["nelbo"].mean() + cfg.beta * reg
        # The dropout terms are added per image with weight 1, as eqs. 18 and 24 print them.
        # That reproduces Fig. 15 (p rises fast, then settles near 0.3: the components the
        # reconstruction needs fall to p ~ 0, the others are held at 0.5 by eq. 23). Weighted
        # 1/N (terms of global parameters against a reconstruction summed over a batch), every
        # p fell towards 0 on digits and nothing was ever pruned; dropout_weight sets it.
        if cfg.dropout != "none":  # eq. 23 (gs, rewarded) or eq. 19 (gau)
            name, value, sign = cdrop.penalty(self.dropout_rates()[self.experts()], cfg.dropout)
            out[name] = value
            total = total + sign * cfg.dropout_weight * value
        with torch.no_grad():  # the weights decode() mixes prior codes with
            mean_w = torch.zeros_like(self.mix_weights)
            mean_w[self.experts()] = self._mean_weights(t["a"]).mean(0)
            self.mix_weights.mul_(0.99).add_(0.01 * mean_w)
        out["total"] = total
        return out

    def epoch_stats(self) -> dict[str, float]:
        """Figs. 15-16: the dropout rate (mean over active components, and per component) and
        the active component count. The trainer calls this after every epoch, which is when the
        pruning thresholds of Sec. V-G are applied (Fig. 16 counts components per epoch)."""
        self._epoch += 1
        self.prune()
        p = self.dropout_rates().detach()
        ks = self.experts()
        stats = {"dropout_rate": float(p[ks].mean()), "active_components": float(len(ks))}
        if self.config.dropout != "none":
            stats |= {f"p{k}": float(p[k]) for k in range(len(p))}
        return stats

    def before_task(self, task: int, data) -> list[ev.Event]:
        self._pruned, self._epoch, self._task = [], 0, task
        return []

    @torch.no_grad()
    def after_task(self, task: int, data) -> list[ev.Event]:
        """Pruning events of the phase and the mean Dirichlet parameters a per component on
        (up to) 512 of its images, for the expert timeline."""
        x = data.x[:512].to(self.device)
        a = torch.zeros(self.config.n_components)
        for k in self.experts():
            a[k] = float(self._encode(k, x)[2].mean())
        mixing = ev.Mixing(
            task,
            alpha=a.tolist(),
            trainable=self.experts(),
            dropout_rate=self.dropout_rates().tolist(),
        )
        events = [*self._pruned, mixing]
        self._pruned = []
        return events
