"""Model-level metrics over a task sequence, and what `python -m lifelong eval` computes.

Every function here drives a model only through the interface (DESIGN.md, "Model interface")
and returns plain floats/lists, so the app, the CLI and the claim tests share them. Sampling is
seeded inside `torch.random.fork_rng`, so the same weights always give the same values.

    iwelbo_per_task(model, tests, k)        importance-weighted ELBO per task (nats)
    ssim_per_task(model, tests)             SSIM of reconstructions per task
    frechet_of_model(model, tests)          Frechet distance (classifier features) of the
                                            model's samples vs the real test images of all
                                            given (seen) tasks
    frechet_per_task(model, tests)          the same, one value per task
    ari_per_task(model, tests)              k-means ARI of codes vs labels per task
    disentanglement(model, data)            MIG and DCI against ground-truth factors (shapes)
    transfer_matrix(model, tests)           paper 000 eq. 27, s(theta_k, j) per expert and task
    expert_elbo_per_task(model, tests)      each expert's ELBO on each task (Compare experts)
    expert_elbo_table(model, tests, specs)  the same as the trainer stores it beside a snapshot
    TaskProbe(trains, classifier)           which task an image looks like (classifier features)
    task_shares(model, tests, probe)        share of the samples made for task j that look like j

The run-level side (which metric names exist, computing them per snapshot, storing them in
manifest["eval"]) is in `lifelong.runeval`.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import torch

from lifelong import disentangle, evaldata, metrics
from lifelong.likelihood import Unsupported, iwelbo


def _mean(values: list[torch.Tensor]) -> float | None:
    return metrics.finite(torch.cat(values).double().mean().item()) if values else None


@torch.no_grad()
def iwelbo_per_task(
    model, tests: list, k: int = 50, n: int = 256, batch_size: int = 64, seed: int = 0
) -> list[float | None]:
    """Mean IWELBO_k (nats, higher is better; -value is the NLL estimate) of each task's first
    `n` test images, each scored by its routed expert for mixtures. [T]."""
    out = []
    for j, data in enumerate(tests):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + j)
            vals = [
                iwelbo(model, data.x[i : i + batch_size].to(model.device), k).cpu()
                for i in range(0, min(n, len(data)), batch_size)
            ]
        out.append(_mean(vals))
    return out


@torch.no_grad()
def ssim_per_task(model, tests: list, n: int = 256, batch_size: int = 256) -> list[float | None]:
    """Mean SSIM between each task's first `n` test images and their reconstructions. [T]."""
    out = []
    for data in tests:
        vals = []
        for i in range(0, min(n, len(data)), batch_size):
            x = data.x[i : min(i + batch_size, n)].to(model.device)
            vals.append(metrics.ssim(x, model.reconstruct(x)).cpu())
        out.append(_mean(vals))
    return out


@torch.no_grad()
def task_samples(model, task: int, n: int, seed: int = 0) -> torch.Tensor:
    """n samples generated for `task` ([n, C, H, W] on CPU): `model.sample(n, task=task)`, which
    is the task's expert for mixtures and the family's own (possibly task-blind) prior
    otherwise. Seeded per task, as on the Forgetting page."""
    if not model.capabilities.sampling:
        raise Unsupported(f"{model.family} does not generate samples")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + task)
        return model.sample(n, task=task).cpu()


def _feature_pairs(model, tests, classifier, n, seed, task_ids=None):
    """Per task: (real features, sample features), n_j = min(n, test size) of each."""
    if classifier is None:
        from lifelong.classifier import load_classifier

        classifier = load_classifier()
    pairs = []
    for j, data in enumerate(tests):
        m = min(n, len(data))
        t = j if task_ids is None else task_ids[j]
        real = classifier.features(data.x[:m])
        fake = classifier.features(task_samples(model, t, m, seed))
        pairs.append((real.numpy(), fake.numpy()))
    return pairs


def frechet_of_model(
    model, tests: list, classifier=None, n: int = 500, seed: int = 0, task_ids=None
) -> float:
    """Frechet distance (classifier features, paper 001 App. 9.10) between the model's samples
    and the real test images of all tasks in `tests` (the tasks seen so far), lower is better.

    Every task contributes min(n, its test size) real images and as many samples
    `model.sample(m, task=j)` (`task_ids[j]` if given: the task index of tests[j] in the run),
    so each task weighs by its test size up to n, as the union test set of paper 001's Sec. 5.
    `classifier`: a loaded FeatureClassifier (default: the shipped one)."""
    pairs = _feature_pairs(model, tests, classifier, n, seed, task_ids)
    real = np.concatenate([r for r, _ in pairs])
    fake = np.concatenate([f for _, f in pairs])
    return metrics.frechet_from_features(real, fake)


def frechet_per_task(model, tests: list, classifier=None, n: int = 500, seed: int = 0) -> list:
    """Frechet distance (classifier features) per task: samples for task j vs its test set."""
    pairs = _feature_pairs(model, tests, classifier, n, seed)
    return [metrics.finite(metrics.frechet_from_features(r, f)) for r, f in pairs]


def frechet_seen_and_per_task(model, tests, classifier, seen: int, n: int = 500, seed: int = 0):
    """(distance over tasks 0..seen-1, [distance per task]) from one set of samples."""
    pairs = _feature_pairs(model, tests, classifier, n, seed)
    real = np.concatenate([r for r, _ in pairs[:seen]])
    fake = np.concatenate([f for _, f in pairs[:seen]])
    per = [metrics.finite(metrics.frechet_from_features(r, f)) for r, f in pairs]
    return metrics.finite(metrics.frechet_from_features(real, fake)), per


class TaskProbe:
    """Which task of a sequence an image looks like: a logistic regression over the feature
    classifier's features, fit on up to n real training images of every task (label = task
    index). It judges generated images, e.g. whether LGM's samples at task j's z_d code are
    task j's (paper 001 Fig. 5b); `accuracy(tests)` on real test images says how far it can
    be trusted (tasks drawn from one distribution cannot be told apart)."""

    def __init__(self, trains: list, classifier, n: int = 1000, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        if len(trains) < 2:
            raise Unsupported("a task probe needs at least two tasks")
        self.classifier = classifier
        feats = [classifier.features(d.x[:n]).numpy() for d in trains]
        y = np.concatenate([np.full(len(f), j) for j, f in enumerate(feats)])
        self.fit = LogisticRegression(max_iter=2000, random_state=seed)
        self.fit.fit(np.concatenate(feats), y)

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """[N, C, H, W] images in [0, 1] -> task index [N]."""
        return self.fit.predict(self.classifier.features(x).numpy())

    def accuracy(self, tests: list, n: int = 256) -> float:
        hits = [(self.predict(d.x[:n]) == j) for j, d in enumerate(tests)]
        return float(np.concatenate(hits).mean())


def task_shares(model, tests: list, probe: TaskProbe, n: int = 256, seed: int = 0) -> list:
    """[T]: the share of n samples generated for task j (`model.sample(n, task=j)`: LGM's
    samples at the code task j was encoded to, a mixture's expert for j, a task-blind prior
    for the others) that `probe` calls task j. A task-blind model's row is the share of each
    task in its samples: what it still generates."""
    out = []
    for j in range(len(tests)):
        out.append(float((probe.predict(task_samples(model, j, n, seed)) == j).mean()))
    return out


def fitting_capacity(
    model, tests: list, classifier, n_seen: int, n: int = 256, seed: int = 0
) -> tuple[float | None, list]:
    """Fitting Capacity (Lesort et al. 2019): a classifier trained on the model's samples of
    the seen tasks, tested on the real test images. Our families generate per task, not per
    class, so the label is the task (`task_samples`: a mixture's expert, LGM's z_d code, a
    task-blind prior for the others); with one class per task (class-incremental sequences)
    it is Lesort's figure. The classifier is a logistic regression on the feature
    classifier's features (the Fréchet distance's), fit on n samples of each seen task.
    Returns (accuracy over the seen tasks' real test images, [T] accuracy on each task's,
    None for unseen tasks); (None, [None] * T) with fewer than two seen tasks (one label)."""
    from sklearn.linear_model import LogisticRegression

    per: list = [None] * len(tests)
    if n_seen < 2:
        return None, per
    feats = [classifier.features(task_samples(model, j, n, seed)).numpy() for j in range(n_seen)]
    y = np.concatenate([np.full(len(f), j) for j, f in enumerate(feats)])
    fit = LogisticRegression(max_iter=2000, random_state=seed).fit(np.concatenate(feats), y)
    hits = []
    for j in range(n_seen):
        real = classifier.features(tests[j].x[:n]).numpy()
        ok = fit.predict(real) == j
        per[j] = float(ok.mean())
        hits.append(ok)
    return float(np.concatenate(hits).mean()), per


# -- codes ----------------------------------------------------------------------------------


def task_expert(model, task: int, x: torch.Tensor) -> int | None:
    """The expert whose codes describe `task`: the one holding it, else the one most of its
    images are routed to; None for single-latent families."""
    if not model.experts():
        return None
    holders = model.task_experts()
    if task < len(holders) and holders[task] >= 0:
        return int(holders[task])
    return int(torch.mode(model.select(x.to(model.device))).values)


@torch.no_grad()
def codes(model, x: torch.Tensor, expert: int | None = None, batch_size: int = 256) -> np.ndarray:
    """Deterministic codes [N, D]: the posterior means of Gaussian blocks and the softmax
    probabilities of categorical blocks, concatenated in block order (through `expert`'s
    encoder for mixtures). Raises Unsupported for a family without an encoder."""
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(model.device)
            post = model.encode(xb) if expert is None else model.encode(xb, expert=expert)
            cols = [
                p["mu"] if "mu" in p else torch.softmax(p["logits"], dim=-1) for p in post.values()
            ]
            out.append(torch.cat(cols, dim=1).cpu())
    except NotImplementedError:
        raise Unsupported(f"{model.family} has no encoder to read codes from") from None
    return torch.cat(out).double().numpy()


def ari_per_task(model, tests: list, n: int = 256, seed: int = 0) -> list[float | None]:
    """k-means ARI (k = number of classes present) of each task's codes vs its labels. [T]."""
    out = []
    for j, data in enumerate(tests):
        x, y = data.x[:n], data.y[:n]
        z = codes(model, x, task_expert(model, j, x))
        out.append(metrics.finite(metrics.kmeans_ari(z, y.numpy(), seed=seed)))
    return out


def disentanglement(model, data, task: int, n: int = 1000, which=("mig", "dci")) -> dict:
    """MIG and/or DCI of the codes of `data` (a TaskData with factors, e.g. `shapes`) through
    the expert holding `task`. Returns {"mig": {...}, "dci": {...}} (see lifelong.disentangle)."""
    if data.factors is None:
        raise Unsupported(f"{data.name} has no ground-truth factors (use shapes)")
    x, f = data.x[:n], data.factors[:n].numpy()
    z = codes(model, x, task_expert(model, task, x))
    out = {"factor_names": list(data.factor_names or [])}
    if "mig" in which:
        out["mig"] = disentangle.mig(z, f)
    if "dci" in which:
        out["dci"] = disentangle.dci(z, f)
    return out


@torch.no_grad()
def transfer_matrix(model, tests: list, n: int = 256) -> list[list[float | None]]:
    """Paper 000 eq. 27 with delta = MSE: s(theta_k, j) for every expert k (rows; one row for
    single-latent families) and task j (columns): how well component k reconstructs task j."""
    experts = model.experts() or [None]
    rows = []
    for k in experts:
        row = []
        for data in tests:
            x = data.x[:n].to(model.device)
            recon = model.reconstruct(x) if k is None else model.reconstruct(x, expert=k)
            row.append(metrics.finite(metrics.transfer_score(x, recon)))
        rows.append(row)
    return rows


# Each expert's ELBO on each task (the Compare experts page's table), stored beside every
# snapshot of a mixture by the trainer (runs.save_extra: RUN/expert_elbo-03.safetensors,
# manifest["extras"]["expert_elbo"]["3"]), so the page reads it (explore.experts.stored_scores)
# instead of computing T x K x SCORE_IMAGES ELBOs (3 s at 10 tasks x 10 experts). Tensors:
# "dataset" [T, K] on each task's test split (what the page scores where it reads the dataset,
# and always for a generated one), "sample" [T, K] on the run's stored evaluation images
# (evaldata; NaN rows for generated tasks, whose stored sample the page never uses), "experts"
# [K] their ids, "n" and "seed" what expert_elbo_per_task used.
EXPERT_TABLE = "expert_elbo"
SCORE_IMAGES = 256
SCORE_SEED = 0


def seeded_expert_scores(model, x: torch.Tensor, seed: int) -> torch.Tensor:
    """[K, n] one-sample ELBOs (nats) of every expert on x with fixed noise (seed), so the same
    weights give the same figures and experts are compared on the same draw."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([model.score(x, expert=k) for k in model.experts()])


@torch.no_grad()
def expert_elbo_per_task(model, tests: list, n: int = 256, seed: int = 0) -> torch.Tensor:
    """[T, K] mean one-sample ELBO (nats) of each expert on each task's first n test images,
    the noise drawn from `seed` for every task."""
    rows = [seeded_expert_scores(model, d.x[:n].to(model.device), seed).mean(1) for d in tests]
    return torch.stack(rows).cpu()


def _as_stored(model, dtype: str | None):
    """The model with the weights its snapshot holds: on the CPU (the page's device, whose
    noise the seeded scores draw) and rounded to the stored dtype (float16 snapshots)."""
    if (dtype or "float32") == "float32" and model.device.type == "cpu":
        return model
    ref = copy.deepcopy(model).cpu()
    if dtype == "float16":
        with torch.no_grad():
            for t in ref.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
    return ref.eval()


@torch.no_grad()
def expert_elbo_table(
    model, tests: list, specs: list[str], dtype: str | None = "float32"
) -> dict[str, torch.Tensor]:
    """The tensors stored as EXPERT_TABLE for `model` (eval mode) whose snapshot is written
    with `dtype`; `tests` every task's full test split as the trainer loads it, `specs` the
    tasks: expert_elbo_per_task on the images the page will score (comment above)."""
    ref = _as_stored(model, dtype)
    dataset = expert_elbo_per_task(ref, tests, SCORE_IMAGES, SCORE_SEED)
    sample = torch.full_like(dataset, float("nan"))
    for j, (d, spec) in enumerate(zip(tests, specs, strict=True)):
        if evaldata.reads_files(spec):
            x = evaldata.sample(d)["x"][:SCORE_IMAGES].float() / 255  # as evaldata.stored
            images = [SimpleNamespace(x=x)]
            sample[j] = expert_elbo_per_task(ref, images, SCORE_IMAGES, SCORE_SEED)[0]
    return {
        "dataset": dataset.float(),
        "sample": sample.float(),
        "experts": torch.tensor(ref.experts(), dtype=torch.int64),
        "n": torch.tensor([SCORE_IMAGES]),
        "seed": torch.tensor([SCORE_SEED]),
    }
