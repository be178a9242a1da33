"""L-MVAE: lifelong mixture of VAEs (Ye & Bors, TNNLS 2023; paper 000 in shared/seeds).

K conv VAE experts are trained with the MELBO (eq. 2) under mixing weights w ~ Dir(a). At the
end of each task (Alg. 1 l. 11-14; or, with assign_on="incoming", at the start of the next) the
assignment step (eqs. 3-5, lmvae_assign.py) picks the expert that becomes the depository of the
task just finished; it is frozen for good and the Dirichlet parameters follow eq. 6. At test time
an expert is selected per sample (eq. 7, Alg. 1 l. 17-19). Options: the disentangled objective
with an annealed capacity (eq. 17), beta annealing (eq. 28) and the dynamic expansion L-MVAE-Dyn
with a shared sub-encoder/sub-decoder and a novelty threshold (eqs. 24-26). supervision=
"supervised"/"semi" (eqs. 18-23) builds the subclass in lmvae_supervised.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lifelong import events as ev
from lifelong import losses
from lifelong.models import lmvae_assign as assign
from lifelong.models import stacked
from lifelong.models.base import Capabilities, Codes, GenerativeModel, LatentBlock, Posterior
from lifelong.models.nets import ConvBody, DeconvBody, VAEExpert


@dataclass
class LMVAEConfig:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1
    n_experts: int = 0  # 0: one per task (the paper requires K >= number of tasks)
    latent_dim: int = 10
    channels: int = 32
    hidden: int = 128
    lr: float = 1e-3
    objective: str = "elbo"  # "elbo": eq. 2; "capacity": the disentangled eq. 17
    gamma: float = 4.0  # eq. 17 weight of |KL - C| (Sec. VII-D: gamma = 4)
    capacity_max: float = 25.0  # eq. 17: C rises linearly from 0 to this (nats) in each task
    beta_anneal: bool = False  # eq. 28: beta* rises from beta_start to 1 in each task
    beta_start: float = 0.0
    beta_warmup: float = 0.5  # fraction of a task's training over which beta* reaches 1
    dirichlet_e: float = 1e-4  # the "very small positive value" e of eq. 6
    u: float = 1e6  # the large constant u of eq. 3
    # eq. 3 on the "finished" task's data at its end (Alg. 1 l. 11), or on the "incoming" one's
    # at the next task's start (the only reading before this field; lmvae_assign.py)
    assign_on: str = "finished"
    assign_batches: int = 4  # batches of that task's data evaluated by eq. 3
    assign_batch_size: int = 128
    dynamic: bool = False  # L-MVAE-Dyn (Sec. VI)
    novelty_threshold: float = 4.0  # S* of eq. 25 (mean L2 distance in pixel units, eq. 24)
    novelty_metric: str = "matched"  # eq. 24 over "matched" pairs (i = l) or all "pairs"
    novelty_samples: int = 1000  # N_j = N'_k of eq. 24
    supervision: str = "none"  # "supervised" (eqs. 18-21) / "semi" (eqs. 22-23): lmvae_supervised
    n_classes: int = 10  # categories of the discrete latent d (labels must be < n_classes)
    temperature: float = 0.5  # T of the Gumbel-softmax eq. 20 (not given in the paper)
    label_fraction: float = 1000 / 60000  # "semi": labelled share (Sec. VII-B: 1,000 MNIST)
    semi_beta: float = 0.5  # "semi": beta of eq. 23 (Sec. VII-B)
    # "supervised": what the decoder of eq. 19 reads in training, the image's "label" (as Sec. V
    # does for semi's labelled images; Kingma et al.'s labelled term) or a Gumbel-softmax
    # "sample" of q(d|x) (eq. 20, the literal reading): docs/readings.md, reading 6
    supervised_decoder: str = "label"
    expert_batching: str = "auto"  # experts in one vmapped call or a loop (models/stacked.py)

    def validate(self) -> None:
        choices = {
            "objective": ("elbo", "capacity"),
            "assign_on": assign.READINGS,
            "novelty_metric": ("matched", "pairs"),
            "supervision": ("none", "supervised", "semi"),
            "supervised_decoder": ("label", "sample"),
        }
        for name, options in choices.items():
            assign.check_choice(name, getattr(self, name), options)
        stacked.resolve(self.expert_batching, torch.device("cpu"))  # a valid name
        if self.n_classes < 2 or self.temperature <= 0 or not 0 < self.label_fraction <= 1:
            raise ValueError("need n_classes >= 2, temperature > 0 and 0 < label_fraction <= 1")
        if not self.dynamic and 0 < self.n_experts < self.n_tasks:
            raise ValueError(
                f"lmvae needs n_experts >= number of tasks ({self.n_experts} < {self.n_tasks});"
                " set dynamic=true to grow the mixture instead"
            )


class LMVAE(GenerativeModel):
    family = "lmvae"
    config_cls = LMVAEConfig
    capabilities = Capabilities(mixture=True)
    # The experts' terms are stacked.expert_terms' plain VAE terms, so they can be vmapped
    # (the supervised subclass adds a class encoder to each expert: it loops).
    stackable_terms = True

    @classmethod
    def create(cls, config: LMVAEConfig, arch: dict | None = None) -> LMVAE:
        """supervision != "none" builds the supervised subclass (eqs. 18-23), so the family
        key and the run format stay those of L-MVAE."""
        if cls is LMVAE and config.supervision != "none":
            from lifelong.models.lmvae_supervised import SupervisedLMVAE

            return SupervisedLMVAE(config, arch)
        return cls(config, arch)

    def __init__(self, config: LMVAEConfig, arch: dict | None = None):
        super().__init__(config)
        config.validate()
        c, size, _ = config.image_shape
        default_k = 1 if config.dynamic else (config.n_experts or config.n_tasks)
        k = int((arch or {}).get("n_experts", default_k))
        # L-MVAE-Dyn: one sub-encoder/sub-decoder shared by every expert (Sec. VI).
        self.enc_body = ConvBody(c, size, config.channels) if config.dynamic else None
        self.dec_body = DeconvBody(c, size, config.channels) if config.dynamic else None
        self.experts_ = nn.ModuleList(self._new_expert() for _ in range(k))
        # c of eqs. 3-5: experts that hold a finished task (frozen for good unless dynamic).
        self.register_buffer("assigned", torch.zeros(k, dtype=torch.bool))
        # Experts that receive gradients in the current task.
        self.register_buffer("trainable", torch.ones(k, dtype=torch.bool))
        # eq. 6 with no expert assigned yet: a_i = 1 / K (written out, not computed from
        # `assigned`, so the model also builds on the meta device: models.state_numel)
        self.register_buffer("alpha", torch.full((k,), 1.0 / max(k, 1)))
        self.register_buffer("task_expert", torch.full((config.n_tasks,), -1, dtype=torch.long))
        self.register_buffer("shared_fixed", torch.tensor(False))
        self.sync_trainable()

    def _new_expert(self) -> VAEExpert:
        cfg = self.config
        return VAEExpert(cfg.image_shape, cfg.latent_dim, cfg.channels, cfg.hidden, not cfg.dynamic)

    # -- structure -----------------------------------------------------------------------
    def arch(self) -> dict:
        return {"n_experts": len(self.experts_)}

    def experts(self) -> list[int]:
        return list(range(len(self.experts_)))

    def task_experts(self) -> list[int]:
        return self.task_expert.tolist()

    def latent_blocks(self) -> list[LatentBlock]:
        d = self.config.latent_dim
        return [LatentBlock(f"z{k}", d, "gaussian", k) for k in self.experts()]

    def sync_trainable(self) -> None:
        """Frozen experts get requires_grad=False, so they receive no gradient, and the trainer
        builds its optimizer from trainable_parameters() only, so Adam moments and weight decay
        never touch them either."""
        if self.trainable.is_meta:  # built only to size its tensors (models.state_numel)
            return
        for k, expert in enumerate(self.experts_):
            assign.freeze_module(expert, not bool(self.trainable[k]))
        for body in (self.enc_body, self.dec_body):
            if body is not None:
                assign.freeze_module(body, bool(self.shared_fixed))

    def trainable_parameters(self) -> list[nn.Parameter]:
        self.sync_trainable()
        return super().trainable_parameters()

    # -- per-expert pieces ---------------------------------------------------------------
    def _posterior(self, k: int, x: torch.Tensor):
        return self.experts_[k].encode(x, self.enc_body)

    def _logits(self, k: int, z: torch.Tensor) -> torch.Tensor:
        return self.experts_[k].decode_logits(z, self.dec_body)

    def _terms(self, k: int, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        mu, logvar = self._posterior(k, x)
        z = losses.reparameterise(mu, logvar) if sample else mu
        return losses.vae_terms(self._logits(k, z), x, mu, logvar)

    def _terms_of(self, ks: list[int], x: torch.Tensor, sample: bool = True) -> list[dict]:
        """Eq. 1's terms of the experts `ks` on the same x: one vmapped call over their stacked
        parameters, or a loop (config.expert_batching; L-MVAE-Dyn's shared bodies: a loop)."""
        mode = stacked.resolve(self.config.expert_batching, x.device, len(ks))
        if mode == "loop" or self.config.dynamic or not self.stackable_terms or len(ks) < 2:
            return [self._terms(k, x, sample) for k in ks]
        experts = [self.experts_[k] for k in ks]
        t = stacked.expert_terms(experts, x, self.config.latent_dim, sample)
        return [{"rec": t["rec"][i], "kl": t["kl"][i]} for i in range(len(ks))]

    def expert_elbos(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """ELBO of every expert per sample (eq. 1): [N, K] nats. sample=False decodes the
        posterior mean, a deterministic stand-in used for routing so a UI shows stable choices."""
        cols = [losses.elbo(t) for t in self._terms_of(self.experts(), x, sample)]
        return torch.stack(cols, dim=1)

    # -- inference -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        ks = self.experts() if expert is None else [expert]
        out = {}
        for k in ks:
            mu, logvar = self._posterior(k, x)
            out[f"z{k}"] = {"mu": mu, "logvar": logvar}
        return out

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        if expert is None:
            if len(codes) != 1:
                raise ValueError("decode: give the codes of one expert, or name the expert")
            expert = int(next(iter(codes))[1:])
        return torch.sigmoid(self._logits(expert, codes[f"z{expert}"]))

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Decode the posterior mean through `expert`, or per sample through the selected one."""
        chosen = self.select(x) if expert is None else torch.full((len(x),), expert)
        return self._reconstruct_as(x, chosen)

    def _reconstruct_as(self, x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Each image's posterior mean decoded by its expert in `chosen` [N]."""
        out = torch.empty_like(x)
        for k in chosen.unique().tolist():
            rows = chosen == k
            mu, _ = self._posterior(k, x[rows])
            out[rows] = torch.sigmoid(self._logits(k, mu))
        return out

    def _sampling_expert(self, task: int | None, expert: int | None) -> int:
        """The expert `sample` draws from: the given one, the task's holder, or a random one of
        the experts holding a task."""
        if expert is None and task is not None:
            expert = int(self.task_expert[task])
        if expert is None or expert < 0:
            held = [k for k in self.task_experts() if k >= 0] or self.experts()
            expert = held[int(torch.randint(len(held), ()))]
        return expert

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        expert = self._sampling_expert(task, expert)
        z = torch.randn(n, self.config.latent_dim, device=self.device)
        return torch.sigmoid(self._logits(expert, z))

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Per-sample ELBO (nats) of `expert`, or of the expert selected for each sample."""
        if expert is not None:
            return losses.elbo(self._terms(expert, x))
        elbos = self.expert_elbos(x)
        return elbos.gather(1, self.select(x)[:, None]).squeeze(1)

    def assess(self, x: torch.Tensor, score: bool = True):
        """(reconstruct(x), score(x) or None, select(x)) with eq. 7's selection computed once:
        K posterior-mean passes to select, K sampled ones for the score and one decode of the
        chosen experts (2K + 1 passes; the three calls make 4K + 1). Same values and the same
        noise as the calls: only the sampled ELBOs draw."""
        chosen = self.select(x)
        elbo = self.expert_elbos(x).gather(1, chosen[:, None]).squeeze(1) if score else None
        return self._reconstruct_as(x, chosen), elbo, chosen

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Selection probabilities v of eq. 7: [N, K]. They are nearly flat for ELBOs of
        hundreds of nats; select() takes their argmax, the mode of Cat(v)."""
        return losses.selection_probabilities(self.expert_elbos(x, sample=False))

    def select(self, x: torch.Tensor) -> torch.Tensor:
        # argmax v == argmax ELBO, since -1/L increases with L for L < 0.
        return self.expert_elbos(x, sample=False).argmax(dim=1)

    # -- training ------------------------------------------------------------------------
    def _beta(self) -> float:
        cfg = self.config
        if not cfg.beta_anneal:
            return 1.0
        ramp = min(1.0, self.progress / max(cfg.beta_warmup, 1e-8))
        return cfg.beta_start + (1.0 - cfg.beta_start) * ramp

    def _mixing_weights(self, ks: list[int], device) -> torch.Tensor:
        """Weights [len(ks)] of the trainable experts `ks` for one minibatch."""
        if self.config.dynamic:
            return torch.ones(1, device=device)  # Dyn trains one component with eq. 1
        # w ~ Dir(a) per minibatch (Alg. 1 l. 6). Frozen experts have a = e, so their weight
        # is ~0 and they get no gradient: we sample only the free coordinates, which by the
        # Dirichlet aggregation property are Dir(a_free) once eq. 2 renormalises them.
        a = self.alpha[ks].double()
        return torch.distributions.Dirichlet(a).sample().clamp_min(1e-12).float().to(device)

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        ks = self.trainable.nonzero().flatten().tolist()
        w = self._mixing_weights(ks, batch["x"].device)
        return self._mixture_loss(self._terms_of(ks, batch["x"]), w)

    def _mixture_loss(self, per_expert: list[dict], w: torch.Tensor, weight=None) -> dict:
        """Eq. 2 over the experts' terms ({"rec", "kl"} [N] each) with weights w; the batch is
        averaged, or summed with per-sample `weight` [N] (the semi-supervised eq. 23)."""
        cfg = self.config
        beta, capacity = self._beta(), cfg.capacity_max * self.progress
        objs = []
        for terms in per_expert:
            if cfg.objective == "capacity":
                objs.append(losses.capacity_objective(terms, cfg.gamma, capacity))  # eq. 17
            else:
                objs.append(losses.elbo(terms, beta))  # eq. 1, or eq. 28 when annealed

        def mix(values: list[torch.Tensor]) -> torch.Tensor:
            v = losses.melbo(torch.stack(values), w)  # eq. 2
            return v.mean() if weight is None else (v * weight).sum()

        out = {
            "total": -mix(objs),
            "rec": -mix([t["rec"] for t in per_expert]),
            "kl": mix([t["kl"] for t in per_expert]),
        }
        if cfg.beta_anneal:
            out["beta"] = torch.tensor(beta)
        if cfg.objective == "capacity":
            out["capacity"] = torch.tensor(capacity)
        return out

    def before_task(self, task: int, data) -> list[ev.Event]:
        events: list[ev.Event] = []
        if task > 0 and self.config.dynamic:
            events += self._novelty(task, data)
        elif task > 0 and (self.config.assign_on == "incoming" or self.assigned.sum() < task):
            # the finished task has no depository yet: the "incoming" reading, or a run made
            # before assign_on existed (its config reads "finished", its state does not) resumed
            events += self._assign(task, data, "incoming")
        elif self.config.dynamic:
            self.trainable[:] = False
            self.trainable[0] = True
            events.append(ev.ExpertAdded(task, expert=0))
        # eq. 6: a = e for the experts that do not train. L-MVAE-Dyn marks the expert it trains
        # as holding the task (assigned) from the task's start, so it reads `trainable` instead
        held = ~self.trainable if self.config.dynamic else self.assigned
        self.alpha.copy_(losses.dirichlet_parameters(held, self.config.dirichlet_e))
        self.sync_trainable()
        trainable = self.trainable.nonzero().flatten().tolist()
        events.append(
            ev.Mixing(
                task,
                alpha=self.alpha.tolist(),
                trainable=trainable,
                frozen=self._frozen_list(),
            )
        )
        return events

    def _frozen_list(self) -> list[int]:
        return (~self.trainable).nonzero().flatten().tolist()

    @torch.no_grad()
    def _batch_elbos(self, task: int, data, sample: bool) -> torch.Tensor:
        """Mean ELBO of every expert on eq. 3's fixed batches of task `task`'s data: [B, K]."""
        cfg = self.config
        xs = assign.task_batches(data.x, task, cfg.assign_batch_size, cfg.assign_batches)
        return torch.stack([self.expert_elbos(x.to(self.device), sample).mean(0) for x in xs]).cpu()

    @torch.no_grad()
    def _assign(self, task: int, data, reading: str) -> list[ev.Event]:
        """Eqs. 3-5 on task `task`'s data: the task just finished ("finished", from after_task)
        or the one about to start ("incoming", from before_task); the chosen free expert is
        frozen as the finished task's depository. "finished" scores the posterior-mean ELBO
        that select() routes by (eq. 7), "incoming" the sampled ELBO it always used."""
        finished = task if reading == "finished" else task - 1
        elbo = self._batch_elbos(task, data, sample=reading == "incoming")  # [B, K]
        assigned = self.assigned.cpu().clone()  # c' (the buffer itself changes below)
        p, log_q = assign.eq3(elbo, assigned, self.config.u, reading)  # eq. 3
        j = assign.choose(log_q, assigned)  # eq. 4
        self.assigned.copy_(assign.freeze(assigned, j))  # eq. 5
        self.trainable.copy_(~self.assigned)
        self.task_expert[finished] = j
        events: list[ev.Event] = [
            ev.Assignment(
                task,
                expert_loss=(-elbo).mean(0).tolist(),
                p_c=p.tolist(),
                log_q=[float(v) for v in log_q.masked_fill(assigned, float("inf"))],
                chosen=j,
            )
        ]
        if reading == "finished":
            events.append(ev.TaskHolder(task, expert=j))
        # recorded under the task whose hook froze it (a resumed run keeps the events of the
        # tasks before its start); the timeline shows it frozen from the next task on
        events.append(ev.ExpertFrozen(task, expert=j, holds_task=finished))
        return events

    @torch.no_grad()
    def novelty_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 24 for each expert k on images x [N, ...]: [K] (lmvae_assign.novelty_distances,
        config.novelty_metric)."""
        recs = [self.reconstruct(x, k) for k in self.experts()]
        return assign.novelty_distances(x, recs, self.config.novelty_metric)

    def _novelty(self, task: int, data) -> list[ev.Event]:
        """L-MVAE-Dyn (eqs. 24-26): add an expert when every expert is farther than S* from the
        new task, otherwise keep training the nearest one. Shared bodies are fixed after task 0."""
        g = torch.Generator().manual_seed(2000 + task)
        idx = torch.randperm(len(data.x), generator=g)[: self.config.novelty_samples]
        d = self.novelty_distances(data.x[idx].to(self.device))
        self.shared_fixed.fill_(True)
        found = {"distances": d.tolist(), "threshold": self.config.novelty_threshold}
        if float(d.min()) > self.config.novelty_threshold:  # eq. 25
            self._add_expert()
            chosen = len(self.experts_) - 1
            event = ev.ExpertAdded(task, expert=chosen, **found)
        else:
            chosen = int(d.argmin())  # eq. 26
            event = ev.ExpertReused(task, expert=chosen, **found)
        self.trainable[:] = False
        self.trainable[chosen] = True
        self.assigned[chosen] = True
        return [event]

    def _add_expert(self) -> None:
        dev = self.device
        self.experts_.append(self._new_expert().to(dev))
        self.assigned = torch.cat([self.assigned, torch.zeros(1, dtype=torch.bool, device=dev)])
        self.trainable = torch.cat([self.trainable, torch.zeros(1, dtype=torch.bool, device=dev)])
        self.alpha = torch.cat([self.alpha, torch.zeros(1, device=dev)])

    @torch.no_grad()
    def after_task(self, task: int, data) -> list[ev.Event]:
        """L-MVAE with assign_on="finished": eqs. 3-5 on the finished task (Alg. 1 l. 11), unless
        it is the last (nothing trains after it). Otherwise record which trainable expert holds
        the task: in L-MVAE-Dyn the chosen one; in L-MVAE the free expert that fits it best,
        provisional under "incoming" until eq. 3 names the depository at the next task."""
        cfg = self.config
        if cfg.dynamic:
            holder = int(self.trainable.nonzero()[0])
        elif cfg.assign_on == "finished" and task + 1 < cfg.n_tasks:
            return self._assign(task, data, "finished")
        else:
            elbo = self._batch_elbos(task, data, sample=False).mean(0)
            holder = int(elbo.masked_fill(~self.trainable.cpu(), float("-inf")).argmax())
        self.task_expert[task] = holder
        return [ev.TaskHolder(task, expert=holder)]
