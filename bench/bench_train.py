"""Training throughput of every family beside a bare PyTorch loop of the same networks
(printed, nothing asserted).

    python bench/bench_train.py [--families "vae;lmvae:expert_batching=vmap"] [--steps 64]
                                [--threads 1] [--device cpu|cuda]

Each family is built as the trainer builds it (`build_config` for two digit tasks, default
network sizes), `before_task(0, data)` is called once on the digits training set (task id
y >= 5, so CPVAE sees two populations and trains eq. 6 as in a real run), and `train_step` is
timed on batches of 128 real images -> images/s. Aim: >= 0.9x the bare loop.

The bare loop trains a deep copy of the family's freshly built networks (the same nn.Modules of
nets.py, the same initial weights) with plain PyTorch: forward, the loss terms the family's
objective shares with a textbook version of its model, backward, Adam step, and none of the
family's bookkeeping (term dicts, finiteness checks, requires_grad syncing, running
statistics). Mixtures run the same number of experts' forward/backward in a Python loop.
Terms a family computes because its paper requires them (dHSIC, L_MI, the info term, the EWC
penalty, eq. 6's cross-population KL) are left out of the bare loop and named in the "note"
column: they explain a ratio below 0.9. A third side, "same objective", adds those terms to
the bare loop of the families that have them (lgm, mvae, cpvae, infogan; the formulas from
lifelong.losses / lifelong.hsic / cpvae_objective, which are pure functions): family / same
objective is then what the family's own bookkeeping costs. vae, ewc (F = 0 on task 0) and
lmvae have no such term and show "-".

Method: after two warm-up steps each, the family and its bare loop alternate in chunks of
`--chunk` steps until each has run `--steps`, so both see the same machine load (the header
prints the load average; the machine may be shared). Each side's images/s = steps * batch /
its summed time. torch.set_flush_denormal(True) as the trainer does, `--threads` torch threads
(1 by default, so figures compare across machines with a busy neighbour).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lifelong import data as ldata  # noqa: E402
from lifelong import models  # noqa: E402
from lifelong.train.trainer import build_config  # noqa: E402

TASKS = ["digits:classes=0-4", "digits:classes=5-9"]
FAMILIES = ["vae", "ewc", "lmvae", "mvae", "lgm", "cpvae", "infogan"]
BATCH = 128

NOTES = {
    "vae": "",
    "ewc": "family adds the EWC penalty over all P params from task 1 on (F = 0 on task 0)",
    "lmvae": "K=2 experts (one per task), Dirichlet-weighted MELBO",
    "mvae": "K=4; family adds dHSIC of the 4 codes (eq. 15) + mix-weight EMA",
    "lgm": "family adds the info term (eq. 9: 2nd encoder pass on decodings); no replay on task 0",
    "cpvae": "family adds eq. 6 cross-population KL (every private head on every sample)",
    "infogan": "family adds L_MI (S network fwd/bwd in the G step); no replay on task 0",
}


# -- plain building blocks (textbook formulas, no lifelong.losses) -------------------------
def bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def kl_normal(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def rsample(mu, logvar):
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def adam_step(opt, loss):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


# -- bare loops: each returns step(batch) over a deep copy of the family's networks ---------
def bare_vae(m):
    net = copy.deepcopy(m.net)
    opt = torch.optim.Adam(net.parameters(), lr=m.config.lr)

    def step(b):
        x = b["x"]
        mu, lv = net.enc_head(net.enc_body(x))
        logits = net.dec_body(net.dec_head(rsample(mu, lv)))
        adam_step(opt, (bce(logits, x) + kl_normal(mu, lv)).mean())

    return step


def bare_lmvae(m):
    experts = copy.deepcopy(m.experts_)
    alpha = m.alpha.clone()
    opt = torch.optim.Adam(experts.parameters(), lr=m.config.lr)

    def step(b):
        x = b["x"]
        w = torch.distributions.Dirichlet(alpha.double()).sample().float()
        w = w / w.sum()
        nelbo = 0.0
        for k, e in enumerate(experts):
            mu, lv = e.enc_head(e.enc_body(x))
            logits = e.dec_body(e.dec_head(rsample(mu, lv)))
            nelbo = nelbo + w[k] * (bce(logits, x) + kl_normal(mu, lv))
        adam_step(opt, nelbo.mean())

    return step


def bare_mvae(m, full: bool = False):
    """full: + beta * dHSIC of the components' posterior means (eq. 15), median bandwidths
    (the config's heuristic, hsic_bandwidth) floored as the family does (MVAE.independence)."""
    from lifelong import hsic

    net = copy.deepcopy(m)
    cfg = m.config
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    prior = torch.full((BATCH, cfg.n_components), cfg.prior_concentration, device=m.device)

    def step(b):
        x = b["x"]
        zs, mus, kl, a = [], [], 0.0, []
        for i in range(cfg.n_components):
            h = net.enc_bodies[i](x)
            mu, lv = net.enc_heads[i](h)
            a.append(F.softplus(net.dir_heads[i](h)).squeeze(-1) + 0.05)
            zs.append(net.sub_decoders[i](rsample(mu, lv)))
            mus.append(mu)
            kl = kl + kl_normal(mu, lv)
        a = torch.stack(a, 1).clamp(max=1e3)
        w = torch.distributions.Dirichlet(a).rsample()
        logits = net.mix_body(net.mix_head((torch.stack(zs, 1) * w[..., None]).sum(1)))
        kl_w = torch.distributions.kl_divergence(
            torch.distributions.Dirichlet(a), torch.distributions.Dirichlet(prior[: len(x)])
        )
        loss = (bce(logits, x) + kl + kl_w).mean()
        if full:
            bw = hsic.median_bandwidths(mus, cfg.hsic_bandwidth).clamp_min(cfg.hsic_min_bandwidth)
            loss = loss + cfg.beta * hsic.dhsic(mus, bw)
        adam_step(opt, loss)

    return step


def bare_lgm(m, full: bool = False):
    """full: + eq. 9's info term, a second encoder pass (body + Gaussian head) on the
    decodings: lambda * (-H(Q(z_c | x_hat)))."""
    net = copy.deepcopy(m.student)
    opt = torch.optim.Adam(net.parameters(), lr=m.config.lr)
    tau, lam = m.config.tau_start, m.config.info_lambda

    def step(b):
        x = b["x"]
        h = net.enc_body(x)
        mu, lv = net.enc_head(h)
        log_q = torch.log_softmax(net.disc_head(h), -1)
        zd = F.gumbel_softmax(log_q, tau=tau)
        logits = net.dec_body(net.dec_head(torch.cat([rsample(mu, lv), zd], 1)))
        kl_d = (log_q.exp() * log_q).sum(-1) + math.log(log_q.shape[-1])
        loss = bce(logits, x) + kl_normal(mu, lv) + kl_d
        if full:
            _, lv_hat = net.enc_head(net.enc_body(torch.sigmoid(logits)))
            loss = loss - lam * 0.5 * (lv_hat + 1.0 + math.log(2 * math.pi)).sum(-1)
        adam_step(opt, loss.mean())

    return step


def bare_cpvae(m, full: bool = False):
    """Eq. 3: each sample through its own population's private head. full: eq. 6, every
    private head on every sample (the cross-population KL needs each head's KL on the other
    populations' data), alpha * cross KL instead of the own KL."""
    from lifelong.models.cpvae_objective import cross_population_kl

    net = copy.deepcopy(m)
    opt = torch.optim.Adam(net.parameters(), lr=m.config.lr)
    alpha = m.alpha()

    def step(b):
        x, pop = b["x"], b["task"]
        h = net.body(x)
        mu_z, lv_z = net.shared_head(h)
        logits = net.shared_decoder(rsample(mu_z, lv_z))
        kl = kl_normal(mu_z, lv_z)
        if full:
            heads = [net.private_heads[k](h) for k in range(len(net.private_heads))]
            kl_t = torch.stack([kl_normal(mu, lv) for mu, lv in heads], 1)  # [N, K]
            kl = kl + alpha * cross_population_kl(kl_t, pop)
        for k in pop.unique().tolist():
            rows = pop == k
            if full:
                mu_t, lv_t = heads[k][0][rows], heads[k][1][rows]
            else:
                mu_t, lv_t = net.private_heads[k](h[rows])
                kl = kl.index_put((rows,), kl[rows] + kl_normal(mu_t, lv_t))
            t = rsample(mu_t, lv_t)
            out = net.private_decoders[k](torch.cat([t, t.new_zeros(1, t.shape[1])]))
            logits = logits.index_put((rows,), logits[rows] + out[:-1] - out[-1:])
        adam_step(opt, (bce(logits, x) + kl).mean())

    return step


def bare_infogan(m, full: bool = False):
    """WGAN-GP. full: + L_MI (eq. 10), S on the generator's samples in the G step, G and S
    updated together."""
    from lifelong import losses

    cfg = m.config
    g, d, s = copy.deepcopy(m.generator), copy.deepcopy(m.critic), copy.deepcopy(m.aux)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    players = list(g.parameters()) + (list(s.parameters()) if full else [])
    opt_g = torch.optim.Adam(players, lr=cfg.lr, betas=(0.5, 0.9))
    dev = m.device

    def generate(n):
        z, c = torch.randn(n, cfg.noise_dim, device=dev), torch.randn(n, cfg.latent_dim, device=dev)
        k = torch.randint(cfg.discrete_dim, (n,), device=dev)
        return torch.sigmoid(g(z, c, F.one_hot(k, cfg.discrete_dim).float())), c, k

    def step(b):
        real = b["x"]
        n = len(real)
        for _ in range(cfg.n_critic):
            with torch.no_grad():
                fake = generate(n)[0]
            eps = torch.rand(n, 1, 1, 1, device=dev)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
            gp = (grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt().sub(1).pow(2).mean()
            adam_step(opt_d, d(fake).mean() - d(real).mean() + cfg.gp_lambda * gp)
        fake, c, k = generate(n)
        loss = -d(fake).mean()
        if full:
            mu, logvar, logits = s(fake)
            mi = losses.infogan_mi(c, mu, logvar, k, logits)
            loss = loss - cfg.mi_lambda * (cfg.mi_c_weight * mi["mi_c"] + mi["mi_d"]).mean()
        adam_step(opt_g, loss)

    return step


BARE = {
    "vae": bare_vae,
    "ewc": bare_vae,
    "lmvae": bare_lmvae,
    "mvae": bare_mvae,
    "lgm": bare_lgm,
    "cpvae": bare_cpvae,
    "infogan": bare_infogan,
}
# The "same objective" side: the bare loops with the paper's own terms (module doc).
FULL = {name: partial(BARE[name], full=True) for name in ("lgm", "mvae", "cpvae", "infogan")}


# -- measurement ---------------------------------------------------------------------------
def load_data():
    full = ldata.load_task("digits", "train")
    return SimpleNamespace(x=full.x, y=full.y, task=(full.y >= 5).long(), n=len(full.x))


def batches(data, seed: int, device):
    """Random batches, already on the device (the copy is not timed, for either side)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(data.n, (BATCH,), generator=g)
        b = {"x": data.x[idx], "y": data.y[idx], "task": data.task[idx]}
        yield {k: v.to(device) for k, v in b.items()}


def parse_family(spec: str) -> tuple[str, dict]:
    """ "lmvae" or "lmvae:expert_batching=vmap,latent_dim=4" -> (family, config overrides)."""
    from lifelong.train.trainer import parse_overrides

    family, _, rest = spec.partition(":")
    return family, parse_overrides(family, [kv for kv in rest.split(",") if kv])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(spec: str, data, steps: int, chunk: int, device) -> dict[str, float]:
    """Images/s of the family, its bare loop and (where FULL has one) its same-objective
    loop, timed in alternating chunks."""
    torch.manual_seed(0)
    family, overrides = parse_family(spec)
    cfg = build_config(family, TASKS, overrides)
    model = models.build(family, cfg).to(device)
    model.train()
    model.progress = 0.0
    bare = BARE[family](model)  # a copy of the networks before any step
    sides = {"bare": bare}
    if family in FULL:
        sides["same"] = FULL[family](model)
    model.before_task(0, data)
    opts = model.make_optimizers()
    src = batches(data, 0, device)
    fam = lambda b: model.train_step(b, 0, opts)  # noqa: E731
    sides = {"family": fam, **sides}
    for _ in range(2):  # warm-up: allocator, Adam state, lazy inits
        for fn in sides.values():
            fn(next(src))
    spent = dict.fromkeys(sides, 0.0)
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        for name, fn in sides.items():
            bs = [next(src) for _ in range(n)]
            sync(device)
            t0 = time.perf_counter()
            for b in bs:
                fn(b)
            sync(device)
            spent[name] += time.perf_counter() - t0
        done += n
    return {name: steps * BATCH / t for name, t in spent.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--families",
        default=";".join(FAMILIES),
        help="';'-separated; a family may carry config overrides: 'lmvae:expert_batching=vmap'",
    )
    ap.add_argument("--steps", type=int, default=64, help="timed train steps per side")
    ap.add_argument("--chunk", type=int, default=8, help="steps per side between switches")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    fams = [f.strip() for f in args.families.split(";") if f.strip()]
    unknown = [f for f in fams if parse_family(f)[0] not in BARE]
    if unknown:
        ap.error(f"unknown families {unknown}; valid: {', '.join(FAMILIES)}")
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    data = load_data()
    load0 = os.getloadavg()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()},"
        f" batch {BATCH}, steps {args.steps} per side (chunks of {args.chunk}),"
        f" load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    head = (
        f"{'family':<8} | {'family img/s':>12} | {'bare img/s':>10} | {'ratio':>5} |"
        f" {'same-objective img/s':>20} | {'ratio':>5} | note"
    )
    print(head)
    print("-" * len(head))
    t_all = time.perf_counter()
    for fam in fams:
        ips = measure(fam, data, args.steps, args.chunk, device)
        ratio = ips["family"] / ips["bare"]
        flag = "" if ratio >= 0.9 else " (< 0.9)"
        same, same_ratio = "-", "-"
        if "same" in ips:
            same, same_ratio = f"{ips['same']:.0f}", f"{ips['family'] / ips['same']:.2f}"
        print(
            f"{fam:<8} | {ips['family']:>12.0f} | {ips['bare']:>10.0f} | {ratio:>5.2f} |"
            f" {same:>20} | {same_ratio:>5} | {NOTES[parse_family(fam)[0]]}{flag}",
            flush=True,
        )
    load1 = os.getloadavg()
    print(
        f"total {time.perf_counter() - t_all:.0f} s; load average at the end"
        f" {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
