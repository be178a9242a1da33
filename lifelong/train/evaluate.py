"""Evaluation of a model on every task of its sequence: one row of the forgetting matrix."""

from __future__ import annotations

import torch

from lifelong import metrics


@torch.no_grad()
def evaluate(model, tests: list, max_samples: int = 512, batch_size: int = 256) -> dict:
    """Evaluate `model` (eval mode) on each task's test set (first `max_samples` images).

    Returns {"mse": [T], "elbo": [T], "psnr": [T]} and, for mixtures, "routing": [T][K] the
    fraction of each task's test images selected to each expert, and "routing_accuracy": [T]
    the fraction sent to the expert holding that task (None where no expert holds it yet);
    for models that predict class labels (supervised / semi-supervised L-MVAE, paper 000
    Tables I-II), "class_accuracy": [T] the share of each task's labelled test images whose
    predicted class is its label.
    """
    out: dict[str, list] = {"mse": [], "elbo": [], "psnr": []}
    experts = model.experts()
    holders = model.task_experts()
    if experts:
        out["routing"], out["routing_accuracy"] = [], []
    predict = getattr(model, "predict_labels", None)
    if predict is not None:
        out["class_accuracy"] = []
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(1234)  # the ELBO is a one-sample estimate: same noise for every snapshot
    for j, data in enumerate(tests):
        x_all = data.x[:max_samples]
        y_all = data.y[:max_samples] if predict is not None else None
        mse, elbo, psnr, chosen, right = [], [], [], [], []
        for i in range(0, len(x_all), batch_size):
            x = x_all[i : i + batch_size].to(model.device)
            # reconstruct(x), score(x), select(x): eq. 7's selection once (models.base.assess)
            recon, score, sel = model.assess(x)
            mse.append(metrics.mse(x, recon))
            psnr.append(metrics.psnr(x, recon))
            elbo.append(score)
            if experts:
                chosen.append(sel)
            if predict is not None:
                y = y_all[i : i + batch_size].to(model.device)
                right.append((predict(x) == y)[y >= 0].cpu())
        out["mse"].append(metrics.finite(torch.cat(mse).mean().item()))
        out["psnr"].append(metrics.finite(torch.cat(psnr).mean().item()))
        out["elbo"].append(metrics.finite(torch.cat(elbo).mean().item()))
        if experts:
            sel = torch.cat(chosen).cpu()
            frac = torch.bincount(sel, minlength=len(experts)).float() / len(sel)
            out["routing"].append([round(v, 4) for v in frac.tolist()])
            holder = holders[j] if j < len(holders) else -1
            out["routing_accuracy"].append(float(frac[holder]) if holder >= 0 else None)
        if predict is not None:
            hits = torch.cat(right)
            out["class_accuracy"].append(float(hits.float().mean()) if len(hits) else None)
    torch.random.set_rng_state(gen_state)
    return out
