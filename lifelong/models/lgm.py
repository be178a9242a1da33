"""LGM: lifelong generative modelling with a student-teacher VAE (Ramapuram, Gregorova, Kalousis,
Neurocomputing 2020; paper 001 in shared/seeds).

One VAE (the student) learns the tasks in order. Before each new task the student is frozen and
becomes the teacher; the new student starts from its weights (Sec. 4) and sees batches that mix
the new task's real images with the teacher's generations so that, after k earlier tasks, the
real share is pi = 1/(k+1) (Sec. 4: omega ~ Ber(pi), omega = 1 real). The latent is a discrete
block z_d (Gumbel-softmax relaxed categorical, App. 9.7) and an independent Gaussian block z_c
(Sec. 4.3). The objective is eq. 10: the augmented ELBO, the consistency regulariser between the
student's and the teacher's z_d posteriors on the replayed images (eq. 10, Sec. 4.1) and the
information-restricting term lambda * L_I on z_c (eq. 9, Sec. 4.4). z_d starts with one category
and grows by one per task; the student receives the teacher's weights, the layers around z_d
re-initialised at the new size (App. 9.3 table, App. 9.8; nets.grow).

The network is nets.LGMNet, built from the baselines' parts: ConvBody -> GaussianHead for z_c,
a discrete head (hidden layer, then logits) on the same body, DecoderHead on [z_c, z_d] ->
DeconvBody.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lifelong import events, losses
from lifelong.models import ewc_core
from lifelong.models.base import Capabilities, Codes, GenerativeModel, LatentBlock, Posterior
from lifelong.models.nets import LGMNet, grow
from lifelong.models.replay import ReplayRecord


@dataclass
class LGMConfig:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1
    latent_dim: int = 10  # |z_c|, the continuous block
    channels: int = 32
    hidden: int = 128
    lr: float = 1e-3
    discrete_dim: int = 1  # initial |z_d| (App. 9.3 table: lifelong models start with 1)
    grow_discrete: bool = True  # App. 9.8: |z_d| += 1 at every new task
    # App. 9.8: the layers into and out of z_d are re-initialised (Glorot) at every growth
    # ("reinit", the paper's). "transfer" copies them and zero-pads the new category instead: it
    # keeps the teacher's function exactly, but the new code starts as a worse decoder input
    # than the old one (see `grow`).
    grow_init: str = "reinit"
    consistency: bool = True  # eq. 10 consistency regulariser (Fig. 12a ablation: False)
    info_restrict: bool = True  # eq. 9 information-restricting term (Fig. 12a ablation: False)
    info_lambda: float = 0.01  # lambda of eq. 10 (Sec. 4.6: 0.01 for every experiment)
    tau_start: float = 1.0  # Gumbel-softmax temperature at the start of each task (App. 9.7)
    tau_min: float = 0.5  # ... annealed exponentially to this at the end of the task
    replay_grid: int = 16  # replayed samples recorded per task for inspection (0: none)
    # Beyond the paper, off by default (0). With eq. 10 alone nothing moves a new task onto its
    # new z_d category, so fixing z_d does not regenerate one task (docs/claims.md, "Tying z_d to
    # the task"). task_anchor weighs a cross-entropy tying task t's real images to category t
    # and each replayed image to the category that generated it (the task boundary growth
    # already uses); zd_info weighs the authors' code's discrete mutual-information bonus
    # (their run scripts: 0.3), InfoGAN's L_I for z_d: a decoding at category d must be
    # recognised as d by Q(z_d|x). They tie codes to tasks; the generations follow reliably
    # only with detach_q (below). The shipped LGM run uses 2, 3, info_lambda = 1 and detach_q.
    task_anchor: float = 0.0
    zd_info: float = 0.0
    # Beyond the paper, off by default: Q (the encoder and both heads) reading the decodings in
    # L_I and zd_info is held fixed, so those bounds train what produced the decodings (the
    # decoder; for L_I also the codes) and Q learns to read images from the ELBO and anchor
    # alone. Trained through the bounds, Q games them: its z_c variance on decodings goes to
    # the clamp (L_I) and its z_d head reads the decoder's marks, not the task (zd_info).
    detach_q: bool = False
    # Paper 001 Sec. 5's EWC baseline on LGM's own graphical model ("the same graphical model
    # ... for all models"): regulariser="ewc" trains the one student on each task's real images
    # only (no teacher, replay or consistency term) with ewc_core's penalty at weight
    # ewc_lambda (ewc.py's default), z_d fixed at discrete_dim categories (no growth: F and the
    # anchor are over a fixed parameter vector).
    regulariser: str = "replay"
    ewc_lambda: float = 100.0
    fisher_samples: int = 512

    def validate(self) -> None:
        if min(self.latent_dim, self.channels, self.hidden, self.n_tasks, self.discrete_dim) < 1:
            raise ValueError("latent_dim, channels, hidden, n_tasks and discrete_dim must be >= 1")
        if self.grow_init not in ("transfer", "reinit"):
            raise ValueError(f"grow_init must be 'transfer' or 'reinit', not {self.grow_init!r}")
        if min(self.info_lambda, self.replay_grid, self.task_anchor, self.zd_info) < 0:
            raise ValueError("info_lambda, replay_grid, task_anchor and zd_info must be >= 0")
        if self.task_anchor and not self.grow_discrete and self.discrete_dim < self.n_tasks:
            raise ValueError("task_anchor needs a z_d category per task (grow_discrete=true)")
        if self.regulariser not in ("replay", "ewc"):
            raise ValueError(f"regulariser must be 'replay' or 'ewc', not {self.regulariser!r}")
        if self.regulariser == "ewc" and (self.grow_discrete or self.task_anchor):
            raise ValueError(
                "regulariser=ewc keeps z_d fixed: set grow_discrete=false (and discrete_dim to"
                " the categories wanted) and task_anchor=0"
            )
        if self.ewc_lambda < 0 or self.fisher_samples < 1:
            raise ValueError("need ewc_lambda >= 0 and fisher_samples >= 1")
        if not 0 < self.tau_min <= self.tau_start:
            raise ValueError(
                f"need 0 < tau_min <= tau_start (got {self.tau_min}, {self.tau_start})"
            )


def consistency_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Consistency regulariser of eq. 10 on replayed images, in its printed direction
    KL[Q_phi(z_d|x_hat) || Q_Phi(z_d|x_hat)], student first: teacher [N, J_t], student [N, J]
    with J >= J_t (App. 9.8) -> [N] nats,

        sum_{k < J_t} q_k (log q_k - log p_k) + sum_{k >= J_t} q_k log q_k,

    q the student's posterior, p the teacher's. The teacher has no probability for the
    category(ies) added by growth, so the exact KL would be infinite; this follows the
    authors' reading (their code, not spelled out in the paper): the teacher's
    log-probabilities are padded with 0 (not -inf) for the new category, which then contributes
    only the student's q log q. That term lies in [-1/e, 0] (minimum at q = 1/e): it does not
    forbid the student from putting replayed mass on the new code, unlike KL[teacher ||
    student] with a zero-padded teacher (the -log(1 - q_new) penalty that pulls every image,
    new data included, back to the old codes). It is 0 when J == J_t and the student's
    posterior equals the teacher's; with growth it is not a true divergence and can be
    slightly negative.

    With a one-category teacher (J_t = 1) the term is sum_k q_k log q_k = -H(q): it spreads
    the replayed images over the codes without tying them to the teacher's, so which code each
    task ends on is seed luck; padding the teacher's *probabilities* with 0 (App. 9.8 read
    literally) ties the replay to code 0, but the shared head then puts the new task there too
    within ~5 steps. Hence the opt-in `task_anchor` (config; docs/claims.md, "Tying z_d to the
    task")."""
    log_q = torch.log_softmax(student_logits, dim=-1)
    log_p = torch.log_softmax(teacher_logits, dim=-1)
    log_p = F.pad(log_p, (0, student_logits.shape[-1] - teacher_logits.shape[-1]), value=0.0)
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1)


class LGM(ReplayRecord, ewc_core.EWCPenalty, GenerativeModel):
    """Student-teacher lifelong VAE. `student` is the model; `teacher` (None before task 1) is
    the frozen previous student, kept in the state dict so a snapshot is complete."""

    family = "lgm"
    config_cls = LGMConfig
    capabilities = Capabilities(replay=True)

    def __init__(self, config: LGMConfig, arch: dict | None = None):
        super().__init__(config)
        config.validate()
        arch = arch or {}
        self.student = LGMNet(config, int(arch.get("discrete_dim", config.discrete_dim)))
        teacher_dim = int(arch.get("teacher_dim", 0))
        self.register_module(
            "teacher", self._frozen(LGMNet(config, teacher_dim)) if teacher_dim else None
        )
        self.init_replay_record()  # replayed samples kept per task (replay.py)
        # The z_d category each task's data is encoded to (after_task); -1 before that.
        self.register_buffer("task_code", torch.full((config.n_tasks,), -1, dtype=torch.long))
        if config.regulariser == "ewc":  # ewc_core: F summed over finished tasks, Xi
            self.init_ewc()

    @staticmethod
    def _frozen(net: LGMNet) -> LGMNet:
        for p in net.parameters():
            p.requires_grad_(False)
            p.grad = None
        return net.eval()

    # -- structure -----------------------------------------------------------------------
    @property
    def discrete_dim(self) -> int:
        return self.student.discrete_dim

    def arch(self) -> dict:
        return {
            "discrete_dim": self.discrete_dim,
            "teacher_dim": self.teacher.discrete_dim if self.teacher is not None else 0,
        }

    def latent_blocks(self) -> list[LatentBlock]:
        return [
            LatentBlock("zd", self.discrete_dim, "categorical"),
            LatentBlock("zc", self.config.latent_dim, "gaussian"),
        ]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never trains
        return self

    # -- inference -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        logits, mu, logvar = self.student.posterior(x)
        return {"zd": {"logits": logits}, "zc": {"mu": mu, "logvar": logvar}}

    def _one_hot(self, codes: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        return F.one_hot(codes, dim or self.discrete_dim).float().to(self.device)

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        """{"zd": [N, J] one-hot (or probabilities), "zc": [N, d]} -> images [N, C, H, W].
        A missing z_d is the prior mean (uniform), a missing z_c the prior mean (0)."""
        zc, zd = codes.get("zc"), codes.get("zd")
        n = len(zc if zc is not None else zd)
        if zc is None:
            zc = torch.zeros(n, self.config.latent_dim, device=self.device)
        if zd is None:
            zd = torch.full((n, self.discrete_dim), 1.0 / self.discrete_dim, device=self.device)
        if zd.shape[1] != self.discrete_dim:
            raise ValueError(
                f"decode: zd has {zd.shape[1]} categories, the model {self.discrete_dim}"
            )
        return torch.sigmoid(self.student.decode_logits(zd, zc))

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Decode the posterior mode of z_d (one-hot) and the posterior mean of z_c."""
        logits, mu, _ = self.student.posterior(x)
        return torch.sigmoid(self.student.decode_logits(self._one_hot(logits.argmax(1)), mu))

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """z_c ~ N(0, I); z_d fixed to the code task `task` was encoded to (Fig. 5b), or drawn
        from the uniform prior Cat(1/J) when no task (or a task not learnt yet) is given."""
        code = int(self.task_code[task]) if task is not None and task < len(self.task_code) else -1
        cats = torch.full((n,), code) if code >= 0 else torch.randint(self.discrete_dim, (n,))
        zc = torch.randn(n, self.config.latent_dim, device=self.device)
        return torch.sigmoid(self.student.decode_logits(self._one_hot(cats), zc))

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """ELBO per sample (nats) of the student, exact over z_d (`elbo`); [N]."""
        return elbo(self.student, x)

    # -- replay --------------------------------------------------------------------------
    def real_fraction(self, task: int) -> float:
        """pi of Sec. 4: the share of real images after `task` earlier tasks (1 with no teacher)."""
        return 1.0 / (task + 1) if self.teacher is not None else 1.0

    @torch.no_grad()
    def replay(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n teacher generations (Bernoulli means) [n, C, H, W], floor(n/J_t) or one more per
        teacher category: z_d fixed per category, z_c ~ N(0, I) (Sec. 4.3)."""
        teacher = self.teacher
        zd = self._one_hot(self.replay_codes(n), teacher.discrete_dim)
        zc = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(teacher.decode_logits(zd, zc))

    def replay_codes(self, n: int) -> torch.Tensor:
        """The teacher's z_d category of each image of `replay(n)`: 0, 1, ..., J_t - 1 in turn."""
        return torch.arange(n, device=self.device) % self.teacher.discrete_dim

    # -- training ------------------------------------------------------------------------
    def temperature(self) -> float:
        """Gumbel-softmax tau (App. 9.7, "annealed"), exponential from tau_start to tau_min over
        each task. The paper gives no schedule; the authors' code anneals exp(-3e-5 * step)
        from 1.0 down to 0.5 for every new student, which we spread over each task's training
        since the number of steps per task varies widely here."""
        cfg = self.config
        return cfg.tau_start * (cfg.tau_min / cfg.tau_start) ** min(max(self.progress, 0.0), 1.0)

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        """Negative eq. 10, averaged over the augmented batch (real + replayed), with its terms.

        Each of the N real images is joined by `task` replayed ones when a teacher exists, so
        the real share is exactly pi = 1/(task+1) and every epoch still covers the whole task.
        """
        cfg = self.config
        x = batch["x"]
        n_real = len(x)
        n_replay = n_real * task if self.teacher is not None else 0
        if n_replay:
            x = torch.cat([x, self.replay(n_replay)])
        logits, mu, logvar = self.student.posterior(x)
        tau = self.temperature()
        zd = losses.gumbel_softmax(logits, tau)  # App. 9.7, eq. 18
        zc = losses.reparameterise(mu, logvar)
        rec_logits = self.student.decode_logits(zd, zc)
        rec = losses.bernoulli_log_likelihood(rec_logits, x)
        kl_c, kl_d = losses.gaussian_kl(mu, logvar), losses.categorical_kl_uniform(logits)
        per_sample = -(rec - kl_c - kl_d)  # augmented ELBO of eq. 10 (eq. 6)
        cons = torch.zeros_like(per_sample)
        if n_replay and cfg.consistency:
            with torch.no_grad():
                t_logits, _, _ = self.teacher.posterior(x[n_real:])
            cons = torch.cat([cons[:n_real], consistency_kl(t_logits, logits[n_real:])])
        info = torch.zeros_like(per_sample)
        if cfg.info_restrict:
            info = self.info_term(rec_logits)
        total = per_sample + cons + cfg.info_lambda * info
        terms = {}
        if cfg.task_anchor:  # beyond the paper (config): real -> category `task`, replay -> its own
            target = torch.full((len(x),), task, dtype=torch.long, device=x.device)
            if n_replay:
                target[n_real:] = self.replay_codes(n_replay)
            terms["anchor"] = F.cross_entropy(logits, target, reduction="none")
            total = total + cfg.task_anchor * terms["anchor"]
        total = total.mean()
        if cfg.regulariser == "ewc":
            terms["ewc"] = self.ewc_penalty(cfg.ewc_lambda)
            total = total + terms["ewc"]
        if cfg.zd_info:
            terms["zd_info"] = self.zd_info_term(n_real, x.device)
            total = total + cfg.zd_info * terms["zd_info"]
        return {
            "total": total,
            "rec": -rec.mean(),
            "kl_c": kl_c.mean(),
            "kl_d": kl_d.mean(),
            "consistency": cons.mean(),
            "info": info.mean(),
            "tau": torch.tensor(tau),
            "pi": torch.tensor(n_real / len(x)),
            **{k: v.mean() for k, v in terms.items()},
        }

    def zd_info_term(self, n: int, device) -> torch.Tensor:
        """The authors' code's discrete information bonus (not in the paper; see the config): n
        decodings x_hat of z_d = d ~ Cat(1/J), z_c ~ N(0, I), and -log Q(z_d = d | x_hat), the
        InfoGAN lower bound on I(z_d; x_hat) up to H(z_d), as a loss [] (nats). Gradients reach
        the decoder (d must stay readable in what it generates) and, unless detach_q, Q."""
        d = torch.randint(self.discrete_dim, (n,), device=device)
        zc = torch.randn(n, self.config.latent_dim, device=device)
        net = self.student
        x_hat = torch.sigmoid(net.decode_logits(self._one_hot(d), zc))
        return F.cross_entropy(self._q(("enc_body", "disc_head"), x_hat), d)

    def _q(self, parts: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
        """The student's encoder parts applied in turn; with detach_q their parameters get no
        gradient (only what produced x does)."""
        for name in parts:
            mod = getattr(self.student, name)
            if self.config.detach_q:
                params = {k: v.detach() for k, v in mod.named_parameters()}
                x = torch.func.functional_call(mod, params, (x,))
            else:
                x = mod(x)
        return x

    def info_term(self, rec_logits: torch.Tensor) -> torch.Tensor:
        """L_I of eq. 9 per sample [N]: E_{z_c ~ Q(z_c|x_hat)} log Q(z_c|x_hat) = -H(Q(z_c|x_hat)),
        closed form for a diagonal Gaussian, on x_hat = the student's decodings (Bernoulli means,
        so gradients reach the decoder) of the augmented batch's codes: eq. 10 writes L_I(z_c,
        x_hat_<i, x_i). (Log Q at the generating z_c, InfoGAN-style, was tried: every task
        collapsed onto z_d = 0.) The loss adds lambda * L_I: z_c should stay uncertain given
        the student's generations, leaving the distribution-level information to z_d (Sec. 4.4).
        Minimising a lower bound can be gamed: with info_lambda = 1 the encoder learns to tell
        decodings from real images and puts its log-variance on them at GaussianHead's clamp
        (L_I = -54.2 nats for d = 10); at the paper's 0.01 it stays within -15..+4 (docs/claims.md).
        detach_q holds Q fixed here, so only what produced x_hat is trained by the term."""
        # z_c's head only: the discrete head plays no part in L_I
        _, logvar = self._q(("enc_body", "enc_head"), torch.sigmoid(rec_logits))
        return -losses.gaussian_entropy(logvar)

    def before_task(self, task: int, data) -> list[events.Event]:
        """From task 1 on: the student becomes the frozen teacher, the new student gets its
        weights (grown by one z_d category, App. 9.8), and a grid of replayed images is kept."""
        if task == 0 or self.config.regulariser == "ewc":  # EWC: one student, real data
            return [events.Replay(task, pi=1.0, replay_fraction=0.0)]
        out: list[events.Event] = []
        self.teacher = self._frozen(copy.deepcopy(self.student))
        out.append(events.TeacherSwapped(task, teacher_dim=self.teacher.discrete_dim))
        if self.config.grow_discrete:
            old = self.discrete_dim
            self.student = grow(self.student, self.config, old + 1, self.config.grow_init)
            self.student.train(self.training)
            grown = events.DimensionGrown(
                task, block="zd", from_dim=old, to_dim=old + 1, init=self.config.grow_init
            )
            out.append(grown)
        pi = self.real_fraction(task)
        out.append(events.Replay(task, pi=pi, replay_fraction=1.0 - pi))
        return out + self.record_replay(task)

    @torch.no_grad()
    def after_task(self, task: int, data) -> list[events.Event]:
        """Record the z_d category the finished task's data is encoded to (the mode of q(z_d|x)
        over up to 512 of its images): sample(task=...) then generates from that code."""
        g = torch.Generator().manual_seed(5000 + task)
        idx = torch.randperm(len(data.x), generator=g)[:512]
        was_training = self.training
        self.eval()
        logits, _, _ = self.student.posterior(data.x[idx].to(self.device))
        self.train(was_training)
        counts = torch.bincount(logits.argmax(1).cpu(), minlength=self.discrete_dim)
        code = int(counts.argmax())
        if task < len(self.task_code):
            self.task_code[task] = code
        share = float(counts[code]) / max(int(counts.sum()), 1)
        out = [events.TaskCode(task, code=code, share=share, counts=counts.tolist())]
        if self.config.regulariser == "ewc":
            out += self.consolidate(task, data, self.config.fisher_samples, 64)
        return out

    def ewc_net(self) -> nn.Module:
        """regulariser="ewc": the network EWC protects, the student, as its ELBO (`elbo`)."""
        return _StudentELBO(self.student)


def elbo(net: LGMNet, x: torch.Tensor) -> torch.Tensor:
    """ELBO per sample (nats) of `net`: E_q(z_d) exactly (a sum over its J categories, so no
    relaxation bias) and one reparameterised z_c ~ Q(z_c|x); [N]."""
    logits, mu, logvar = net.posterior(x)
    zc = losses.reparameterise(mu, logvar)
    q = torch.softmax(logits, dim=1)
    rec = torch.zeros(len(x), device=x.device)
    for j in range(net.discrete_dim):
        zd = F.one_hot(torch.full((len(x),), j, device=x.device), net.discrete_dim).to(x.dtype)
        rec = rec + q[:, j] * losses.bernoulli_log_likelihood(net.decode_logits(zd, zc), x)
    return rec - losses.gaussian_kl(mu, logvar) - losses.categorical_kl_uniform(logits)


class _StudentELBO(nn.Module):
    """`elbo` as a module's forward, so torch.func can call it with other parameters
    (named "net.<student's name>")."""

    def __init__(self, net: LGMNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elbo(self.net, x)
