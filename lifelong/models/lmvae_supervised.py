"""Supervised and semi-supervised L-MVAE (paper 000, Sec. V, eqs. 18-23).

Built by `LMVAE.create(config)` (what the registry calls) when `config.supervision` is
"supervised" or "semi", so it is the same family ("lmvae"), run format and lifelong machinery
(assignment eqs. 3-6, selection eq. 7, L-MVAE-Dyn); only the experts and the objective change:

- each expert i has a second encoder q_sigma_i(d|x) (the "class-specific encoder", a softmax over
  n_classes) beside q_eps_i(z|x), and its decoder reads [z, d] (eq. 18: p(x|z,d), z and d
  independent because they come from two separate inference networks);
- d is drawn with the Gumbel-softmax of eq. 20 at temperature T;
- "supervised": the MELBO of eq. 19 (eq. 18 per expert: rec - KL_z - KL_d) plus the mixture of
  cross-entropies of eq. 21 on the labels. By default (supervised_decoder="label") the decoder
  reads each image's label in place of d in training, as semi does for its labelled images:
  with a Gumbel-softmax d of q(d|x) there (eq. 20, supervised_decoder="sample") the
  reconstruction pulls the class encoder away from the labels (docs/readings.md, reading 6);
- "semi": only a fraction of the images keeps its label (`label_fraction`); eq. 23 = eq. 22 on
  the unlabelled images (d drawn from q(d|x), no KL_d) + beta * eq. 19 on the labelled ones,
  whose label replaces d in the decoder (Sec. V: "Labels y replace the discrete variables d
  ... during the decoding"), plus eq. 21 on the labelled ones.

Alg. 1 l. 7-8 (and Sec. V for eq. 23) optimise the ELBO and the cross-entropy "separately" in
each iteration; we take one step on their sum, which is the same first-order update, keeps one
optimizer (the trainer's default) and leaves the cross-entropy unweighted as in eq. 21.

Views: the class latent is one categorical block "d" owned by "shared" (the label space is
common to all experts, while its posterior comes from the chosen expert's class encoder), so
pages that take one Gaussian block per expert keep working.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lifelong import losses
from lifelong.models.base import Codes, LatentBlock, Posterior
from lifelong.models.lmvae import LMVAE
from lifelong.models.nets import ConvBody, DecoderHead, VAEExpert, feature_grid

_PRIME = 2**31 - 1


def label_draw(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed pseudo-uniform number in [0, 1) per image, from its pixels: x [N, ...] -> [N].

    Batches carry no sample index, so "semi" decides which images keep their label from the
    image itself: a universal hash (sum_i a_i q_i) mod p of the 8-bit pixels q_i, exact in int64
    on every device. The same image is labelled in every epoch, batch and resumed run.
    """
    q = (x.flatten(1).clamp(0, 1) * 255).round().long()
    g = torch.Generator().manual_seed(7919 + seed)
    a = torch.randint(1, _PRIME, (q.shape[1],), generator=g).to(q.device)
    return ((q * a).sum(1) % _PRIME).double() / _PRIME


class SupervisedExpert(VAEExpert):
    """A VAEExpert whose decoder head reads [z, d] (d: [N, n_classes]) and with a class encoder
    x -> logits [N, n_classes]. With own_bodies=False (L-MVAE-Dyn) both encoders read the shared
    sub-encoder passed in at call time, like the z encoder does."""

    def __init__(self, image_shape, latent_dim, n_classes, channels, hidden, own_bodies=True):
        super().__init__(image_shape, latent_dim, channels, hidden, own_bodies)
        c, size, _ = image_shape
        features = channels * feature_grid(size) ** 2
        self.dec_head = DecoderHead(latent_dim + n_classes, features, hidden)  # p(x|z, d)
        self.cls_body = ConvBody(c, size, channels) if own_bodies else None
        self.cls_head = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def class_logits(self, x: torch.Tensor, body: nn.Module | None = None) -> torch.Tensor:
        """q_sigma(d|x) as logits [N, n_classes]; d' of eq. 20 is their softmax."""
        return self.cls_head((body or self.cls_body)(x))


class SupervisedLMVAE(LMVAE):
    """L-MVAE with a discrete latent d per expert (eqs. 18-23). See the module docstring."""

    stackable_terms = False  # eq. 18's terms (class encoder, labels) are not stacked.py's

    def _new_expert(self) -> SupervisedExpert:
        cfg = self.config
        return SupervisedExpert(
            cfg.image_shape,
            cfg.latent_dim,
            cfg.n_classes,
            cfg.channels,
            cfg.hidden,
            not cfg.dynamic,
        )

    def latent_blocks(self) -> list[LatentBlock]:
        return [
            *super().latent_blocks(),
            LatentBlock("d", self.config.n_classes, "categorical", "shared"),
        ]

    # -- per-expert pieces ---------------------------------------------------------------
    def class_logits(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Expert k's class encoder: x [N, C, H, W] -> logits [N, n_classes]."""
        return self.experts_[k].class_logits(x, self.enc_body)

    def _logits(self, k: int, z: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder k on [z, d]; without d (a page that passes only z) the uniform p(d)."""
        if d is None:
            d = z.new_full((len(z), self.config.n_classes), 1.0 / self.config.n_classes)
        return super()._logits(k, torch.cat([z, d.to(z.dtype)], dim=1))

    def _terms(self, k: int, x: torch.Tensor, sample: bool = True, labels=None) -> dict:
        """Eq. 18 for expert k, per sample: rec = log p(x|z, d), kl = KL_z + KL_d; [N] each.

        d is a Gumbel-softmax draw from q(d|x) (eq. 20), or with sample=False the mode of q(d|x)
        (deterministic routing). `labels` [N] (-1: none) replace d by their one-hot where given.
        Also returns kl_z, kl_d [N] and the class logits [N, n_classes].
        """
        mu, logvar = self._posterior(k, x)
        logits_d = self.class_logits(k, x)
        n = self.config.n_classes
        z = losses.reparameterise(mu, logvar) if sample else mu
        if sample:
            d = losses.gumbel_softmax(logits_d, self.config.temperature)  # eq. 20
        else:
            d = F.one_hot(logits_d.argmax(1), n).to(x.dtype)
        if labels is not None:
            known = labels >= 0
            given = F.one_hot(labels.clamp(0, n - 1), n).to(x.dtype)
            d = torch.where(known[:, None], given, d)
        terms = losses.vae_terms(self._logits(k, z, d), x, mu, logvar)
        kl_d = losses.categorical_kl_uniform(logits_d)
        return {
            **terms,
            "kl_z": terms["kl"],
            "kl_d": kl_d,
            "kl": terms["kl"] + kl_d,
            "class_logits": logits_d,
        }

    # -- inference -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        """z blocks as L-MVAE, plus "d": the class logits of `expert`, or per sample of the
        expert eq. 7 selects."""
        out = super().encode(x, expert)
        if expert is not None:
            logits = self.class_logits(expert, x)
        else:
            chosen = self.select(x)
            logits = torch.stack([self.class_logits(k, x) for k in self.experts()], dim=1)
            logits = logits[torch.arange(len(x)), chosen]
        out["d"] = {"logits": logits}
        return out

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        """Codes {"z<k>": [N, latent_dim], optional "d": [N, n_classes]} -> images. Without an
        expert, the first z block given names it; without "d", d is the uniform p(d)."""
        if expert is None:
            names = [name for name in codes if name != "d"]
            if not names:
                raise ValueError("decode: give the z codes of one expert")
            expert = int(names[0][1:])
        return torch.sigmoid(self._logits(expert, codes[f"z{expert}"], codes.get("d")))

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Posterior mean z and mode of q(d|x), through `expert` or the selected expert."""
        chosen = self.select(x) if expert is None else torch.full((len(x),), expert)
        return self._reconstruct_as(x, chosen)

    def _reconstruct_as(self, x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for k in chosen.unique().tolist():
            rows = chosen == k
            mu, _ = self._posterior(k, x[rows])
            d = F.one_hot(self.class_logits(k, x[rows]).argmax(1), self.config.n_classes)
            out[rows] = torch.sigmoid(self._logits(k, mu, d.to(x.dtype)))
        return out

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """z ~ N(0, I) and d ~ p(d) (uniform one-hot) through the task's or a held expert."""
        expert = self._sampling_expert(task, expert)
        z = torch.randn(n, self.config.latent_dim, device=self.device)
        cls = torch.randint(self.config.n_classes, (n,), device=self.device)
        return torch.sigmoid(self._logits(expert, z, F.one_hot(cls, self.config.n_classes)))

    @torch.no_grad()
    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class per image: argmax of q(d|x) of the expert eq. 7 selects; [N] long.
        The trainer's evaluation reads it as "class_accuracy" (Tables I-II of paper 000)."""
        return self.encode(x)["d"]["logits"].argmax(1)

    # -- training ------------------------------------------------------------------------
    def labelled(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[N] bool: the images whose label the objective may use. Negative labels never count;
        under "semi" only images whose label_draw falls under label_fraction keep theirs."""
        known = y >= 0
        if self.config.supervision == "semi" and self.config.label_fraction < 1:
            known &= label_draw(x) < self.config.label_fraction
        return known

    def before_task(self, task: int, data) -> list:
        top = int(data.y.max()) if len(data.y) else -1
        if top >= self.config.n_classes:
            raise ValueError(
                f"task {task} has label {top} >= n_classes={self.config.n_classes};"
                f" --set n_classes={top + 1}"
            )
        return super().before_task(task, data)

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        cfg, x, y = self.config, batch["x"], batch["y"]
        ks = self.trainable.nonzero().flatten().tolist()
        w = self._mixing_weights(ks, x.device)
        lab = self.labelled(x, y)
        semi = cfg.supervision == "semi"
        # the decoder reads the label where one is known: semi's labelled images (Sec. V) and,
        # unless supervised_decoder="sample" (eq. 19 with d ~ q(d|x) throughout), supervised's
        by_label = semi or cfg.supervised_decoder == "label"
        labels = torch.where(lab, y, torch.full_like(y, -1)) if by_label else None
        per = [self._terms(k, x, labels=labels) for k in ks]
        weight = None
        if semi:
            for t in per:  # eq. 22: unlabelled images carry no KL_d term
                t["kl"] = t["kl_z"] + lab.to(x.dtype) * t["kl_d"]
            n_lab, n_unl = int(lab.sum()), int((~lab).sum())
            # eq. 23: mean over the unlabelled images + beta * mean over the labelled ones
            weight = torch.where(lab, cfg.semi_beta / max(n_lab, 1), 1.0 / max(n_unl, 1))
        out = self._mixture_loss(per, w, weight)  # eq. 19 / eqs. 22-23
        # eq. 21: sum_i w_i eta(q_i(d|x), y) on the labelled images, eta = cross-entropy
        ce = [F.cross_entropy(t["class_logits"], y.clamp(min=0), reduction="none") for t in per]
        ce = losses.melbo(torch.stack(ce), w)
        out["ce"] = (ce * lab).sum() / lab.sum().clamp(min=1)
        out["total"] = out["total"] + out["ce"]
        out["labelled"] = lab.float().mean()
        return out
