"""CPVAE: cross-population VAE (Isolating Latent Structure with Cross-Population VAEs; paper
004 in shared/seeds).

An instance x of population k has a shared code z and a private code t_k, both N(0, I), and is
generated from g(f_s(z), f_k(t_k)) with g additive (eq. 1). One inference network, a conv body
with a shared Gaussian head for z and one private Gaussian head per population for t_k (eq. 2).
The objective is the mutual-information-regularised bound of eq. 6: each private encoder's KL
is taken on the *other* populations' data, weighted by alpha, annealed as min(1.1^e, 1000)
with e the epoch (App. B.1). Populations are the tasks of the sequence (split one dataset into
populations with `classes=`, e.g. textured:classes=0-4,textured:classes=5-9). A test input's
population is the one of largest importance-sampled marginal likelihood (eqs. 7-8).

Networks (nets.py, shared with every family): ConvBody + GaussianHead for z and for each t_k;
f_s and each f_k = DecoderHead + DeconvBody. Readings chosen where the paper leaves room:
- Likelihood: Bernoulli (as every family here, so scores are comparable nats) instead of the
  paper's Gaussian with isotropic covariance; g adds f_s and f_k in *logit* space, before the
  sigmoid, which is eq. 1's "mean parameterised by g" for a Bernoulli.
- f_k(t) = D_k(t) - D_k(0): each private decoder is anchored to contribute nothing at the prior
  mode t = 0. Eq. 1 only fixes f_s + f_k, which is unchanged when a constant image moves from
  every f_k to f_s; the anchor picks the split in which "private code at its prior mean" means
  "no private content", so the shared-only view (Fig. 2, 4th row) is a point of the model.
- Training: all populations together (the paper's Algorithm 1; batches carry "task" = the
  population of each sample). sequential=True is Sec. 4.4's continual setting: the first
  `first_phase` populations together with eq. 6, then one population per phase with the ELBO
  (eq. 3, the paper's choice for phases with no other population to contrast) at lr_later.
- Epochs: the trainer calls epoch_stats() once per epoch, which advances e; before_task resets
  it, so alpha restarts at 1 in every phase. App. B.1's epochs are passes over MNIST-sized
  sets (60,000 images, ~940 steps of 64); alpha_epoch_images = n > 0 counts e as images
  trained on // n, keeping the paper's pace in training time on a small set. Measured on the
  1,501 textured digits (0-4 | 5-9): with per-pass e, alpha was 16 after 720 steps while the
  private codes carried ~0-2 nats, and in one of two seeds a private head stayed at the prior
  on its own data (its digits went to z); e per 6,000 images kept both in use in both seeds.
- translate > 0: App. B.1's random translations during training (0.1 in the paper).
- Eqs. 7-8 live in cpvae_marginal.py (with what they measured on the textured digits).
  score(x) and reconstruct(x) use the population classify(x) picks, or the one passed as
  `expert` (the interface's name for it; experts() is empty, as CPVAE is no mixture).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lifelong import events, losses
from lifelong.models import cpvae_marginal as marginal
from lifelong.models.base import Capabilities, Codes, GenerativeModel, LatentBlock, Posterior
from lifelong.models.cpvae_objective import cross_population_kl, translate
from lifelong.models.nets import ConvBody, DecoderHead, DeconvBody, GaussianHead, feature_grid


@dataclass
class CPVAEConfig:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1  # populations
    latent_dim: int = 10  # shared z (App. B.2: 10; B.1: 2 MNIST, 30 Grassy-MNIST)
    private_dim: int = 10  # each t_k (App. B.2: 10; B.1: 5 MNIST and Grassy-MNIST)
    channels: int = 32
    hidden: int = 128
    lr: float = 1e-3  # Sec. 4: Adam, base learning rate 0.001
    objective: str = "mi"  # "mi": eq. 6; "elbo": eq. 3 (Table 2's "NO MI")
    alpha: float = 1.0  # weight of eq. 6's cross term when not annealed (Table 2 "alpha = 1")
    alpha_anneal: bool = True  # App. B.1: alpha(e) = min(alpha_rate^e, alpha_max)
    alpha_rate: float = 1.1
    alpha_max: float = 1000.0
    alpha_epoch_images: int = 0  # images per epoch e of App. B.1; 0: the trainer's epochs
    classify_samples: int = 10  # importance samples per population in eq. 8 (not given)
    sequential: bool = False  # Sec. 4.4: one population per phase after the first phase
    first_phase: int = 1  # populations learnt together first when sequential (Sec. 4.4: 2)
    lr_later: float = 1e-4  # App. B.2: lr of the phases after the first (0: keep lr)
    translate: float = 0.0  # App. B.1: random shifts up to this fraction of the side in training

    def validate(self) -> None:
        if self.objective not in ("mi", "elbo"):
            raise ValueError(f"objective must be 'mi' or 'elbo', not {self.objective!r}")
        if min(self.latent_dim, self.private_dim, self.channels, self.hidden, self.n_tasks) < 1:
            raise ValueError("latent_dim, private_dim, channels, hidden, n_tasks must be >= 1")
        if self.alpha < 0 or self.alpha_rate < 1 or self.alpha_max < 1:
            raise ValueError("need alpha >= 0, alpha_rate >= 1 and alpha_max >= 1")
        if self.classify_samples < 1 or self.first_phase < 1 or self.lr_later < 0:
            raise ValueError("need classify_samples >= 1, first_phase >= 1 and lr_later >= 0")
        if self.alpha_epoch_images < 0 or not 0 <= self.translate < 0.5:
            raise ValueError("need alpha_epoch_images >= 0 and 0 <= translate < 0.5")


def _decoder(cfg: CPVAEConfig, latent: int) -> nn.Sequential:
    c, size, _ = cfg.image_shape
    features = cfg.channels * feature_grid(size) ** 2
    return nn.Sequential(
        DecoderHead(latent, features, cfg.hidden), DeconvBody(c, size, cfg.channels)
    )


class CPVAE(GenerativeModel):
    family = "cpvae"
    config_cls = CPVAEConfig
    capabilities = Capabilities(likelihood="own", populations=True)

    def __init__(self, config: CPVAEConfig, arch: dict | None = None):
        super().__init__(config)
        config.validate()
        cfg = config
        c, size, _ = cfg.image_shape
        features = cfg.channels * feature_grid(size) ** 2
        t = cfg.n_tasks
        self.body = ConvBody(c, size, cfg.channels)  # eq. 2: one inference network ...
        self.shared_head = GaussianHead(features, cfg.latent_dim, cfg.hidden)  # ... phi_s
        self.private_heads = nn.ModuleList(
            GaussianHead(features, cfg.private_dim, cfg.hidden) for _ in range(t)
        )  # ... and phi_k
        self.shared_decoder = _decoder(cfg, cfg.latent_dim)  # f_{theta_s}
        self.private_decoders = nn.ModuleList(_decoder(cfg, cfg.private_dim) for _ in range(t))
        self.register_buffer("seen", torch.zeros(t, dtype=torch.bool))  # populations learnt
        self._phase: list[int] = list(range(t))  # populations of the current phase
        self._later_phase = False
        self._epoch = 0  # e of App. B.1 within the phase, advanced by epoch_stats()
        self._images = 0  # images trained on in the phase (alpha_epoch_images > 0)

    # -- structure -----------------------------------------------------------------------
    def populations(self) -> list[int]:
        return list(range(self.config.n_tasks))

    def latent_blocks(self) -> list[LatentBlock]:
        cfg = self.config
        blocks = [LatentBlock("z", cfg.latent_dim, "gaussian", "shared")]
        return blocks + [
            LatentBlock(f"t{k}", cfg.private_dim, "gaussian", k) for k in self.populations()
        ]

    def training_phases(self, n_tasks: int) -> list[list[int]]:
        """All populations together (Algorithm 1), or Sec. 4.4's sequence when sequential."""
        if not self.config.sequential:
            return [list(range(n_tasks))]
        first = min(self.config.first_phase, n_tasks)
        return [list(range(first))] + [[t] for t in range(first, n_tasks)]

    # -- pieces ------------------------------------------------------------------------------
    def shared_logits(self, z: torch.Tensor) -> torch.Tensor:
        """f_s(z): z [N, latent_dim] -> logits [N, C, H, W]."""
        return self.shared_decoder(z)

    def private_logits(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """f_k(t) = D_k(t) - D_k(0) (anchored, see the module doc): [N, private_dim] -> logits."""
        out = self.private_decoders[k](torch.cat([t, t.new_zeros(1, t.shape[1])]))
        return out[:-1] - out[-1:]

    def _private_params(self, h: torch.Tensor, population: torch.Tensor):
        """(mu, logvar) [N, private_dim] of each sample's own population's private head."""
        d = self.config.private_dim
        mu, logvar = h.new_zeros(len(h), d), h.new_zeros(len(h), d)
        for k in population.unique().tolist():
            rows = population == k
            mu[rows], logvar[rows] = self.private_heads[k](h[rows])
        return mu, logvar

    def _private_sum(self, t: torch.Tensor, population: torch.Tensor, like: torch.Tensor):
        """f_{k_i}(t_i) for every sample i through its population's decoder: [N, C, H, W]."""
        out = torch.zeros_like(like)
        for k in population.unique().tolist():
            rows = population == k
            out[rows] = self.private_logits(t[rows], k)
        return out

    def _population_of(self, x: torch.Tensor, population) -> torch.Tensor:
        """[N] long: classify(x) if population is None, else the given id(s)."""
        if population is None:
            return self.classify(x)
        if isinstance(population, torch.Tensor):
            return population.to(x.device).long()
        return torch.full((len(x),), int(population), dtype=torch.long, device=x.device)

    # -- inference -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        """{"z", "t0", ...}: every private head's posterior, or only t_expert's."""
        h = self.body(x)
        mu, logvar = self.shared_head(h)
        out = {"z": {"mu": mu, "logvar": logvar}}
        for k in self.populations() if expert is None else [expert]:
            mu, logvar = self.private_heads[k](h)
            out[f"t{k}"] = {"mu": mu, "logvar": logvar}
        return out

    def decode_logits(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        """g = f_s(z) + f_k(t_k) in logit space (eq. 1). Each block present adds its part and a
        missing one adds nothing: {"z"} alone is the shared-only view, {"t_k"} the private-only
        one. `expert` = a population: only its private block is used. Several private blocks
        (a whole-model traversal) add up; since f_k(0) = 0 and eq. 6 drives other populations'
        private posteriors to N(0, I), for an encoded input that is its own population's image."""
        ks = [k for k in self.populations() if f"t{k}" in codes]
        if expert is not None:
            ks = [k for k in ks if k == expert]
        parts = [self.shared_logits(codes["z"])] if "z" in codes else []
        parts += [self.private_logits(codes[f"t{k}"], k) for k in ks]
        if not parts:
            raise ValueError("decode: give the shared code 'z' and/or a private code 't<k>'")
        return torch.stack(parts).sum(0)

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(codes, expert))

    def population_log_likelihoods(self, x: torch.Tensor, samples: int | None = None):
        """log p(x | theta_k, theta_s) for every population by importance sampling (eqs. 7-8,
        cpvae_marginal.py): [N, T] nats, -inf for populations not learnt yet."""
        return marginal.population_log_likelihoods(self, x, samples or self.config.classify_samples)

    def classify(self, x: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """Population of largest marginal likelihood (eq. 7): [N] long."""
        return self.population_log_likelihoods(x, samples).argmax(dim=1)

    def log_likelihood_is(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """lifelong.likelihood's hook: eq. 8 with k samples under the classified population."""
        return self.population_log_likelihoods(x, k).max(dim=1).values

    def _mean_logits(self, x: torch.Tensor, population: torch.Tensor):
        """(f_s(z), f_k(t_k)) logits [N, C, H, W] at the posterior means, k = population [N]."""
        h = self.body(x)
        shared = self.shared_logits(self.shared_head(h)[0])
        t = self._private_params(h, population)[0]
        return shared, self._private_sum(t, population, shared)

    @torch.no_grad()
    def reconstruct_parts(self, x: torch.Tensor, population=None) -> dict[str, torch.Tensor]:
        """Fig. 2 from posterior means: "full" sigmoid(f_s(z) + f_k(t_k)), "shared"
        sigmoid(f_s(z)) (private space ignored), "private" sigmoid(f_k(t_k)) (shared space
        ignored), images [N, C, H, W]; "population" [N], classified unless given."""
        pop = self._population_of(x, population)
        shared, private = self._mean_logits(x, pop)
        parts = {"full": shared + private, "shared": shared, "private": private}
        return {**{k: v.sigmoid() for k, v in parts.items()}, "population": pop}

    @torch.no_grad()
    def decode_cross(self, x: torch.Tensor, population_from=None, population_to: int = 0):
        """Fig. 4: x's shared code and its private code (from population_from's head, the
        classified one if None) decoded through population_to's private decoder. [N, C, H, W]"""
        h = self.body(x)
        t = self._private_params(h, self._population_of(x, population_from))[0]
        logits = self.shared_logits(self.shared_head(h)[0]) + self.private_logits(t, population_to)
        return torch.sigmoid(logits)

    @torch.no_grad()
    def swap_shared(
        self, x_a: torch.Tensor, x_b: torch.Tensor, population_a=None, population_b=None
    ):
        """(a_on_b, b_on_a): x_a's private content over x_b's shared code and vice versa, each
        through its own (classified or given) population's decoder. x_a, x_b [N, C, H, W]."""
        shared_a, private_a = self._mean_logits(x_a, self._population_of(x_a, population_a))
        shared_b, private_b = self._mean_logits(x_b, self._population_of(x_b, population_b))
        return torch.sigmoid(shared_b + private_a), torch.sigmoid(shared_a + private_b)

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Decode the posterior means through the classified (or given) population."""
        return self.reconstruct_parts(x, expert)["full"]

    def _sampling_population(self, task: int | None, expert: int | None) -> int:
        if expert is not None or task is not None:
            return int(expert if expert is not None else task)
        learnt = self.seen.nonzero().flatten().tolist() or self.populations()
        return learnt[int(torch.randint(len(learnt), ()))]

    @torch.no_grad()
    def sample_parts(self, n: int, population: int) -> dict[str, torch.Tensor]:
        """Figs. 6-7: z, t ~ N(0, I) decoded as "full", "shared" and "private" images."""
        dev = self.device
        shared = self.shared_logits(torch.randn(n, self.config.latent_dim, device=dev))
        private = self.private_logits(
            torch.randn(n, self.config.private_dim, device=dev), population
        )
        return {
            "full": (shared + private).sigmoid(),
            "shared": shared.sigmoid(),
            "private": private.sigmoid(),
        }

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """n draws of population `expert` (or `task`; else a random learnt one)."""
        return self.sample_parts(n, self._sampling_population(task, expert))["full"]

    def elbo_terms(self, x: torch.Tensor, population: torch.Tensor) -> dict[str, torch.Tensor]:
        """One-sample terms of eq. 3 for each sample under its population: rec = log p(x|z,t),
        kl_z, kl_t = KL of the shared and own private posteriors; [N] each."""
        h = self.body(x)
        mu_z, lv_z = self.shared_head(h)
        mu_t, lv_t = self._private_params(h, population)
        z, t = losses.reparameterise(mu_z, lv_z), losses.reparameterise(mu_t, lv_t)
        shared = self.shared_logits(z)
        logits = shared + self._private_sum(t, population, shared)
        return {
            "rec": losses.bernoulli_log_likelihood(logits, x),
            "kl_z": losses.gaussian_kl(mu_z, lv_z),
            "kl_t": losses.gaussian_kl(mu_t, lv_t),
        }

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """ELBO (eq. 3) in nats per sample under the classified (or given) population."""
        terms = self.elbo_terms(x, self._population_of(x, expert))
        return terms["rec"] - terms["kl_z"] - terms["kl_t"]

    # -- training ------------------------------------------------------------------------
    def alpha(self) -> float:
        """Weight of eq. 6's cross term: min(rate^e, max) when annealed (App. B.1)."""
        cfg = self.config
        if not cfg.alpha_anneal:
            return cfg.alpha
        return min(cfg.alpha_rate**self._epoch, cfg.alpha_max)

    def uses_mi(self) -> bool:
        """Eq. 6 needs other populations to contrast: phases of one population use eq. 3."""
        return self.config.objective == "mi" and len(self._phase) > 1

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        """Negative eq. 6 (or eq. 3) per sample, averaged over the batch, with named terms."""
        x = batch["x"]
        if self.config.translate > 0 and self.training and torch.is_grad_enabled():
            x = translate(x, self.config.translate)
        pop = batch.get("task")
        pop = torch.full((len(x),), task, device=x.device) if pop is None else pop.long()
        present = pop.unique()
        local = torch.searchsorted(present, pop)  # population -> column of the KL matrix
        h = self.body(x)
        mu_z, lv_z = self.shared_head(h)
        heads = [self.private_heads[k](h) for k in present.tolist()]
        kl = torch.stack([losses.gaussian_kl(m, lv) for m, lv in heads], dim=1)  # [N, M]
        mu_t = torch.stack([m for m, _ in heads], 1)[torch.arange(len(x)), local]
        lv_t = torch.stack([lv for _, lv in heads], 1)[torch.arange(len(x)), local]
        z, t = losses.reparameterise(mu_z, lv_z), losses.reparameterise(mu_t, lv_t)
        shared = self.shared_logits(z)
        logits = shared + self._private_sum(t, pop, shared)  # eq. 1
        rec = losses.bernoulli_log_likelihood(logits, x)
        kl_z = losses.gaussian_kl(mu_z, lv_z)
        own = kl.gather(1, local[:, None]).squeeze(1)
        out = {"rec": -rec.mean(), "kl_z": kl_z.mean(), "kl_t": own.mean()}
        if self.training and torch.is_grad_enabled():
            self._images += len(x)  # training time, for alpha_epoch_images (App. B.1's e)
        if self.uses_mi():
            cross = cross_population_kl(kl, local)  # eq. 6: the own KL is gone, cross KL in
            alpha = self.alpha()
            out |= {"cross_kl": cross.mean(), "alpha": torch.tensor(alpha)}
            objective = rec - kl_z - alpha * cross
        else:
            objective = rec - kl_z - own  # eq. 3
        return {"total": -objective.mean(), **out}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        lr = cfg.lr_later if self._later_phase and cfg.lr_later > 0 else cfg.lr
        return {"model": torch.optim.Adam(self.trainable_parameters(), lr=lr)}

    def epoch_stats(self) -> dict[str, float]:
        """Called by the trainer after each epoch: reports alpha and advances e (App. B.1), by one
        or, with alpha_epoch_images = n > 0, to images trained on // n (see the module doc)."""
        stats = {"alpha": self.alpha(), "alpha_epoch": float(self._epoch)} if self.uses_mi() else {}
        n = self.config.alpha_epoch_images
        self._epoch = self._images // n if n > 0 else self._epoch + 1
        return stats

    def before_task(self, task: int, data) -> list[events.Event]:
        pops = getattr(data, "task", None)
        self._phase = sorted(set(pops.tolist())) if pops is not None else [task]
        self._later_phase = bool(self.seen.any())
        self._epoch, self._images = 0, 0
        objective = "eq. 6 (MI)" if self.uses_mi() else "eq. 3 (ELBO)"
        return [events.Populations(task, populations=list(self._phase), objective=objective)]

    def after_task(self, task: int, data) -> list[events.Event]:
        self.seen[self._phase] = True
        return [events.PopulationsLearnt(task, learnt=self.seen.nonzero().flatten().tolist())]
