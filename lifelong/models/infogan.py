"""Lifelong InfoGAN: lifelong learning of interpretable image representations (Ye & Bors, IPTA
2020; paper 003 in shared/seeds).

A WGAN-GP generator G(z, c, d) plays against a critic D (eq. 2): z ~ N(0, I) is incompressible
noise, c ~ N(0, I) the continuous code and d ~ Cat(k, 1/k) the discrete code (Sec. II-A). An
auxiliary network S(u|o), u = (c, d), with a Gaussian head for c and a categorical head for d,
is trained with G to maximise the mutual-information bound L_MI (eq. 10). From the second task
on, a frozen copy of the previous generator replays what was learnt: the critic's "real" data is
the mixture p(O_hat_{k-1}, O_k) of eq. 7, i.e. the new task's images joined by the previous
generator's samples (eqs. 3-7). `replay=False` is the paper's "conventional training without any
generative replay" (Figs. 2b, 5b), which forgets.

Players (WGAN-GP, Alg. 1 of Gulrajani et al.): the critic takes `n_critic` steps per call of
`train_step`, then G and S take one step together; each player has its own Adam with betas
(0.5, 0.9) and the paper's learning rate 1e-4 (Sec. III).

The paper has no encoder. S plays that role (`encode`, `reconstruct`, `score`): c and d are
inferred by S, z is not inferred and is set to its prior mean 0 (its "posterior" is reported as
the prior N(0, I), so traversals start z at 0 and rank it as carrying no information).

Networks are the shared pieces of nets.py: G = DecoderHead -> DeconvBody (Bernoulli logits,
images = sigmoid), D and S = ConvBody -> heads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lifelong import events, losses
from lifelong.models.base import Capabilities, Codes, GenerativeModel, LatentBlock, Posterior
from lifelong.models.nets import ConvBody, DecoderHead, DeconvBody, GaussianHead, feature_grid
from lifelong.models.replay import ReplayRecord

ADAM_BETAS = (0.5, 0.9)  # WGAN-GP's Adam settings


@dataclass
class InfoGANConfig:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1
    latent_dim: int = 2  # |c|, the continuous code (Figs. 4, 6-7 sweep c_1, c_2 over -1..1)
    noise_dim: int = 16  # |z|, the incompressible noise
    discrete_dim: int = 10  # k, categories of d (Fig. 3: d = 0..9 along the columns)
    channels: int = 32
    hidden: int = 128
    lr: float = 1e-4  # Sec. III: Adam with learning rate 0.0001 for all models
    n_critic: int = 5  # critic steps per generator step (WGAN-GP)
    gp_lambda: float = 10.0  # lambda of eq. 2
    mi_lambda: float = 1.0  # weight of L_MI (eq. 10) in the generator/S objective
    # Weight of the continuous head's term inside L_MI. Paper 003 leaves it open; InfoGAN
    # (Chen et al. 2016, Sec. 6) uses a smaller lambda for continuous codes: with a learnt
    # variance, log S(c|o) grows without bound and otherwise drowns the discrete term.
    mi_c_weight: float = 0.1
    replay: bool = True  # eqs. 3-7; False: no generative replay (Figs. 2b, 5b: forgets)
    replay_grid: int = 16  # replayed samples recorded per task for inspection (0: none)

    def validate(self) -> None:
        sizes = (self.latent_dim, self.noise_dim, self.channels, self.hidden, self.n_tasks)
        if min(sizes) < 1 or self.discrete_dim < 2:
            raise ValueError(
                "latent_dim, noise_dim, channels, hidden, n_tasks must be >= 1, discrete_dim >= 2"
            )
        if self.n_critic < 1 or self.lr <= 0:
            raise ValueError(f"need n_critic >= 1 and lr > 0 (got {self.n_critic}, {self.lr})")
        if min(self.gp_lambda, self.mi_lambda, self.mi_c_weight, self.replay_grid) < 0:
            raise ValueError("gp_lambda, mi_lambda, mi_c_weight and replay_grid must be >= 0")


class Generator(nn.Module):
    """G(z, c, d): z [N, nz], c [N, m], d [N, k] (one-hot or probabilities) -> Bernoulli
    logits [N, C, H, W]; the images are their sigmoid, in [0, 1]."""

    def __init__(self, cfg: InfoGANConfig):
        super().__init__()
        c, size, _ = cfg.image_shape
        features = cfg.channels * feature_grid(size) ** 2
        width = cfg.noise_dim + cfg.latent_dim + cfg.discrete_dim
        self.head = DecoderHead(width, features, cfg.hidden)
        self.body = DeconvBody(c, size, cfg.channels)

    def forward(self, z: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(torch.cat([z, c, d], dim=1)))


class Critic(nn.Module):
    """D of eqs. 1-2: images [N, C, H, W] -> unbounded scores [N]. No normalisation layer, so
    the gradient penalty acts per sample as WGAN-GP requires."""

    def __init__(self, cfg: InfoGANConfig):
        super().__init__()
        c, size, _ = cfg.image_shape
        self.body = ConvBody(c, size, cfg.channels)
        self.head = nn.Sequential(
            nn.Linear(self.body.out_features, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


class Auxiliary(nn.Module):
    """S(u|o) of eq. 10 with its two output layers (Sec. II-C): images [N, C, H, W] ->
    (mu [N, m], logvar [N, m]) of the Gaussian S(c|o) and logits [N, k] of S(d|o)."""

    def __init__(self, cfg: InfoGANConfig):
        super().__init__()
        c, size, _ = cfg.image_shape
        self.body = ConvBody(c, size, cfg.channels)
        features = self.body.out_features
        self.cont = GaussianHead(features, cfg.latent_dim, cfg.hidden)
        self.disc = nn.Sequential(
            nn.Linear(features, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.discrete_dim)
        )

    def forward(self, x: torch.Tensor):
        h = self.body(x)
        mu, logvar = self.cont(h)
        return mu, logvar, self.disc(h)


class InfoGAN(ReplayRecord, GenerativeModel):
    """Lifelong InfoGAN. `previous` (None on the first task, or without replay) is the frozen
    generator of the last task, kept in the state dict so a snapshot is complete."""

    family = "infogan"
    config_cls = InfoGANConfig
    # an implicit model: lifelong.likelihood computes no bound
    capabilities = Capabilities(likelihood="none", replay=True)
    inference_note: ClassVar[str] = (
        "InfoGAN has no encoder: its auxiliary network S infers c and d; z is set to 0"
    )

    def __init__(self, config: InfoGANConfig, arch: dict | None = None):
        super().__init__(config)
        config.validate()
        self.generator = Generator(config)
        self.critic = Critic(config)
        self.aux = Auxiliary(config)
        previous = bool((arch or {}).get("previous", False))
        self.register_module("previous", self._frozen(Generator(config)) if previous else None)
        self.init_replay_record()  # replayed samples kept per task (replay.py)
        # S's mean d-distribution on each task's data when it finished (zeros: not yet).
        self.register_buffer("task_codes", torch.zeros(config.n_tasks, config.discrete_dim))

    @staticmethod
    def _frozen(net: nn.Module) -> nn.Module:
        for p in net.parameters():
            p.requires_grad_(False)
            p.grad = None
        return net.eval()

    # -- structure -----------------------------------------------------------------------
    def arch(self) -> dict:
        return {"previous": int(self.previous is not None)}

    def latent_blocks(self) -> list[LatentBlock]:
        """c first, so views that default to the first Gaussian variable (the Generation
        grid's rows, Fig. 3) sweep c rather than the noise z."""
        cfg = self.config
        return [
            LatentBlock("c", cfg.latent_dim, "gaussian"),
            LatentBlock("d", cfg.discrete_dim, "categorical"),
            LatentBlock("z", cfg.noise_dim, "gaussian"),
        ]

    def trainable_parameters(self) -> list[nn.Parameter]:
        nets = (self.generator, self.aux, self.critic)
        return [p for net in nets for p in net.parameters() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.previous is not None:
            self.previous.eval()  # the previous generator never trains
        return self

    # -- inference -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        """S as the inference network: c -> S(c|x) (mu, logvar) [N, m]; d -> logits [N, k];
        z is not inferred: its entry is the prior N(0, I) (mu = logvar = 0) [N, nz]."""
        mu, logvar, logits = self.aux(x)
        zeros = torch.zeros(len(x), self.config.noise_dim, device=x.device)
        return {
            "c": {"mu": mu, "logvar": logvar},
            "d": {"logits": logits},
            "z": {"mu": zeros, "logvar": torch.zeros_like(zeros)},
        }

    def _one_hot(self, idx: torch.Tensor) -> torch.Tensor:
        return F.one_hot(idx, self.config.discrete_dim).float().to(self.device)

    def _logits(self, codes: Codes) -> torch.Tensor:
        cfg, dev = self.config, self.device
        n = len(next(v for v in codes.values() if v is not None))
        z, c, d = (codes.get(k) for k in ("z", "c", "d"))
        z = torch.zeros(n, cfg.noise_dim, device=dev) if z is None else z.to(dev)
        c = torch.zeros(n, cfg.latent_dim, device=dev) if c is None else c.to(dev)
        if d is None:
            d = torch.full((n, cfg.discrete_dim), 1.0 / cfg.discrete_dim, device=dev)
        if d.shape[1] != cfg.discrete_dim:
            raise ValueError(f"decode: d has {d.shape[1]} categories, the model {cfg.discrete_dim}")
        return self.generator(z, c, d.to(dev))

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        """{"c": [N, m], "d": [N, k] one-hot (or probabilities), "z": [N, nz]} -> images
        [N, C, H, W] in [0, 1]. A missing z or c is its prior mean 0, a missing d uniform."""
        return torch.sigmoid(self._logits(codes))

    def _inferred_logits(self, x: torch.Tensor) -> torch.Tensor:
        """G(z = 0, c = S's mean, d = S's mode) as Bernoulli logits [N, C, H, W]."""
        mu, _, logits = self.aux(x)
        return self._logits({"c": mu, "d": self._one_hot(logits.argmax(1))})

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """x -> S -> G: the mean of S(c|x), the mode of S(d|x) and z = 0, decoded; [N, C, H, W]."""
        return torch.sigmoid(self._inferred_logits(x))

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """A GAN has no ELBO. Returns the reconstruction log-likelihood through S then G:
        log Bernoulli(x | G(0, mu_S(x), argmax S(d|x))) summed over pixels, [N] nats, finite
        and higher-is-better. It is not a bound on log p(x) (likelihood "none"), but it drops
        when the generator forgets how to produce a task's images, which is what the
        forgetting matrix tracks (metrics read it as "elbo")."""
        return losses.bernoulli_log_likelihood(self._inferred_logits(x), x)

    def prior(self, n: int, generator: torch.Generator | None = None):
        """Codes from the priors of Sec. II-A: z [n, nz], c [n, m] ~ N(0, I), d [n] ~ Cat(1/k)."""
        cfg = self.config
        z = torch.randn(n, cfg.noise_dim, generator=generator).to(self.device)
        c = torch.randn(n, cfg.latent_dim, generator=generator).to(self.device)
        d = torch.randint(cfg.discrete_dim, (n,), generator=generator).to(self.device)
        return z, c, d

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """n images from the priors. With `task`, d is drawn from S's d-distribution on that
        task's data recorded when the task finished (after_task), so samples lean towards the
        categories that task used; it is not refreshed later, and d is uniform for a task not
        learnt yet."""
        z, c, d = self.prior(n)
        if task is not None and task < len(self.task_codes) and self.task_codes[task].sum() > 0:
            d = torch.multinomial(self.task_codes[task], n, replacement=True).to(self.device)
        return torch.sigmoid(self.generator(z, c, self._one_hot(d)))

    # -- replay (eqs. 3-7) ---------------------------------------------------------------
    def real_fraction(self, task: int) -> float:
        """Share of the new task's images in the critic's "real" batch: 1/(task+1). The frozen
        generator stands for the `task` earlier tasks, so each task weighs the same in the
        mixture p(O_hat_{k-1}, O_k) of eq. 7 (the paper leaves the ratio open)."""
        return 1.0 / (task + 1) if self.previous is not None else 1.0

    @torch.no_grad()
    def replay(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images [n, C, H, W] from the frozen previous generator, d stratified over the k
        categories, z and c from N(0, I)."""
        z, c, _ = self.prior(n, generator)
        d = self._one_hot(torch.arange(n) % self.config.discrete_dim)
        return torch.sigmoid(self.previous(z, c, d))

    def mixed_batch(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """The critic's "real" batch of eq. 7: the N task images joined by N * task replayed
        ones when a previous generator exists, so the real share is exactly 1/(task+1) and an
        epoch still covers the whole task; [N * (task + 1), C, H, W]."""
        if self.previous is None or task == 0:
            return x
        return torch.cat([x, self.replay(len(x) * task)])

    # -- training ------------------------------------------------------------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per player: the critic, and G with S (both maximise L_MI)."""
        lr = self.config.lr
        players = list(self.generator.parameters()) + list(self.aux.parameters())
        return {
            "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=ADAM_BETAS),
            "generator": torch.optim.Adam(players, lr=lr, betas=ADAM_BETAS),
        }

    def critic_terms(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The critic's side of eq. 2 (eq. 7 with replay) on real [N, C, H, W]: N fresh fakes
        from G (detached), loss = D(fake) - D(real) + lambda * GP, averaged."""
        with torch.no_grad():
            z, c, d = self.prior(len(real))
            fake = torch.sigmoid(self.generator(z, c, self._one_hot(d)))
        wasserstein = self.critic(real) - self.critic(fake)
        gp = losses.gradient_penalty(self.critic, real, fake)
        loss = -wasserstein.mean() + self.config.gp_lambda * gp["penalty"].mean()
        return {
            "critic": loss,
            "wasserstein": wasserstein.mean().detach(),
            "gp": gp["penalty"].mean(),
        }

    def generator_terms(self, n: int) -> dict[str, torch.Tensor]:
        """G and S's side on n fresh codes: -D(G(z, c, d)) - mi_lambda * L_MI (eq. 10, its c
        term weighted by mi_c_weight). "mi" reports the unweighted L_MI in nats."""
        z, c, d = self.prior(n)
        fake = torch.sigmoid(self.generator(z, c, self._one_hot(d)))
        mu, logvar, logits = self.aux(fake)
        mi = losses.infogan_mi(c, mu, logvar, d, logits)
        adv = -self.critic(fake).mean()
        cfg = self.config
        objective = cfg.mi_c_weight * mi["mi_c"] + mi["mi_d"]  # weighted eq. 10
        loss = adv - cfg.mi_lambda * objective.mean()
        return {
            "generator": loss,
            "adversarial": adv,
            "mi": mi["mi"].mean(),
            "mi_c": mi["mi_c"].mean(),
            "mi_d": mi["mi_d"].mean(),
            "s_accuracy": (logits.argmax(1) == d).float().mean(),
        }

    def _terms(self, c_terms: dict, g_terms: dict, pi: float) -> dict[str, torch.Tensor]:
        """Both players' terms; "total" is the sum of the two losses (for the logs and the
        finiteness check: neither player minimises it)."""
        total = c_terms["critic"] + g_terms["generator"]
        return {"total": total, **c_terms, **g_terms, "pi": torch.tensor(pi)}

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        """Both players' losses at the current weights on `batch` (no step)."""
        real = self.mixed_batch(batch["x"], task)
        return self._terms(
            self.critic_terms(real), self.generator_terms(len(real)), len(batch["x"]) / len(real)
        )

    def train_step(
        self, batch: dict[str, torch.Tensor], task: int, optimizers: dict
    ) -> dict[str, torch.Tensor]:
        """`n_critic` critic steps on the mixed batch (fresh fakes and interpolates each time;
        the trainer hands one real batch per call, so it is reused), then one G + S step.
        A non-finite loss is returned as "total" at once, without stepping that player."""
        real = self.mixed_batch(batch["x"], task)
        pi = len(batch["x"]) / len(real)
        for _ in range(self.config.n_critic):
            c_terms = self.critic_terms(real)
            if not torch.isfinite(c_terms["critic"]):
                return {"total": c_terms["critic"].detach(), **c_terms}
            opt = optimizers["critic"]
            opt.zero_grad(set_to_none=True)
            c_terms["critic"].backward()
            opt.step()
        g_terms = self.generator_terms(len(real))
        if torch.isfinite(g_terms["generator"]):
            opt = optimizers["generator"]
            opt.zero_grad(set_to_none=True)
            g_terms["generator"].backward()
            opt.step()
        return {k: v.detach() for k, v in self._terms(c_terms, g_terms, pi).items()}

    def before_task(self, task: int, data) -> list[events.Event]:
        """From task 1 on (with replay): the generator is copied and frozen as `previous`, whose
        samples join the new task's data (eq. 7), and a grid of replayed images is kept."""
        if task == 0 or not self.config.replay:
            self.previous = None
            return [events.Replay(task, pi=1.0, replay_fraction=0.0)]
        self.previous = self._frozen(copy.deepcopy(self.generator))
        pi = self.real_fraction(task)
        out = [
            events.GeneratorFrozen(task),
            events.Replay(task, pi=pi, replay_fraction=1.0 - pi),
        ]
        return out + self.record_replay(task)

    @torch.no_grad()
    def after_task(self, task: int, data) -> list[events.Event]:
        """Record S's mean d-distribution over up to 512 of the finished task's images, which
        `sample(task=...)` draws d from."""
        g = torch.Generator().manual_seed(5000 + task)
        idx = torch.randperm(len(data.x), generator=g)[:512]
        was_training = self.training
        self.eval()
        _, _, logits = self.aux(data.x[idx].to(self.device))
        self.train(was_training)
        probs = torch.softmax(logits, dim=1).mean(0).cpu()
        if task < len(self.task_codes):
            self.task_codes[task] = probs.to(self.task_codes.device)
        return [events.CodeUsage(task, probs=[round(p, 4) for p in probs.tolist()])]
