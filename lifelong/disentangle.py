"""Disentanglement scores of codes against ground-truth factors, as pure array functions.

Both follow disentanglement_lib (Locatello et al. 2019):

- MIG (Chen et al. 2018): codes are discretised into 20 equal-width bins per dimension, the
  mutual information I(code_i; factor_j) is estimated from the joint histogram, and for every
  factor the gap between its most and second most informative code is divided by the factor's
  entropy; MIG is the mean over factors. 1: each factor lives in exactly one code.
- DCI (Eastwood & Williams 2018): one gradient-boosted-tree model per factor predicts the factor
  from all codes; its feature importances form the importance matrix R [codes, factors].
  Disentanglement = sum_i rho_i (1 - H_F(R_i.)) (each code explains one factor), completeness =
  sum_j rho_j (1 - H_C(R_.j)) (each factor is captured by one code), informativeness = held-out
  prediction score. disentanglement_lib discretises every factor and fits a
  GradientBoostingClassifier; for continuous factors (the `shapes` scale, orientation, x, y)
  that costs ~20x more trees, so we fit a GradientBoostingRegressor on continuous factors
  (score: R^2) and a GradientBoostingClassifier on discrete ones (score: accuracy). Both give
  impurity importances, so R means the same thing.

A factor is "discrete" when it has at most `bins` distinct values (the `shapes` shape index);
continuous factors are binned like the codes for MIG.
"""

from __future__ import annotations

import numpy as np

BINS = 20


def discretise(values, bins: int = BINS) -> np.ndarray:
    """Per column: equal-width histogram bin index in [0, bins) ([N, D] -> int [N, D]); columns
    with at most `bins` distinct values keep their value ranks instead (already discrete)."""
    v = np.asarray(values, dtype=np.float64)
    v = v.reshape(len(v), -1)
    out = np.zeros(v.shape, dtype=np.int64)
    for d in range(v.shape[1]):
        col = v[:, d]
        uniq = np.unique(col)
        if len(uniq) <= bins:
            out[:, d] = np.searchsorted(uniq, col)
        else:
            edges = np.histogram_bin_edges(col, bins)
            out[:, d] = np.clip(np.digitize(col, edges[1:-1]), 0, bins - 1)
    return out


def is_discrete(values, bins: int = BINS) -> np.ndarray:
    """bool [D]: which columns have at most `bins` distinct values."""
    v = np.asarray(values).reshape(len(values), -1)
    return np.array([len(np.unique(v[:, d])) <= bins for d in range(v.shape[1])])


def mutual_information(codes_d: np.ndarray, factors_d: np.ndarray) -> np.ndarray:
    """I(code_i; factor_j) in nats from discrete values: [N, C], [N, F] -> [C, F]."""
    from sklearn.metrics import mutual_info_score

    m = np.zeros((codes_d.shape[1], factors_d.shape[1]))
    for i in range(codes_d.shape[1]):
        for j in range(factors_d.shape[1]):
            m[i, j] = mutual_info_score(factors_d[:, j], codes_d[:, i])
    return m


def entropy(factors_d: np.ndarray) -> np.ndarray:
    """Entropy in nats of each discrete column: [N, F] -> [F]."""
    out = []
    for j in range(factors_d.shape[1]):
        p = np.bincount(factors_d[:, j]) / len(factors_d)
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


def mig(codes, factors, bins: int = BINS) -> dict:
    """Mutual information gap: codes [N, C] (C >= 2), factors [N, F] -> {"mig": mean over
    factors, "per_factor": [F], "mi": [C][F] nats}. Constant factors (zero entropy) are left
    out of the mean (their gap is undefined)."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.shape[1] < 2:
        raise ValueError("MIG needs at least two code dimensions")
    fd = discretise(factors, bins)
    m = mutual_information(discretise(codes, bins), fd)
    h = entropy(fd)
    top = np.sort(m, axis=0)[::-1]
    gap = top[0] - top[1]
    ok = h > 0
    per = np.where(ok, gap / np.where(ok, h, 1.0), np.nan)
    return {
        "mig": float(np.nanmean(per)) if ok.any() else float("nan"),
        "per_factor": [None if np.isnan(v) else float(v) for v in per],
        "mi": m.tolist(),
    }


def _normalised_entropy(p: np.ndarray, base: int) -> float:
    """Entropy of the distribution p (unnormalised, >= 0) with logs in `base`: 0 .. 1."""
    s = p.sum()
    if s <= 0 or base < 2:
        return 1.0 if s <= 0 else 0.0
    q = p / s
    q = q[q > 0]
    return float(-(q * np.log(q)).sum() / np.log(base))


def importance_matrix(
    codes_train, factors_train, codes_test, factors_test, seed: int = 0, n_estimators: int = 100
) -> tuple[np.ndarray, list[float]]:
    """R [C, F] (|impurity importances| of the boosted trees predicting each factor) and the
    held-out score per factor (accuracy for discrete factors, R^2 for continuous ones)."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    ztr, zte = np.asarray(codes_train, np.float64), np.asarray(codes_test, np.float64)
    ftr = np.asarray(factors_train, np.float64).reshape(len(ztr), -1)
    fte = np.asarray(factors_test, np.float64).reshape(len(zte), -1)
    discrete = is_discrete(np.concatenate([ftr, fte]))
    r = np.zeros((ztr.shape[1], ftr.shape[1]))
    scores = []
    for j in range(ftr.shape[1]):
        if discrete[j]:
            model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
            ytr, yte = ftr[:, j].astype(np.int64), fte[:, j].astype(np.int64)
        else:
            model = GradientBoostingRegressor(n_estimators=n_estimators, random_state=seed)
            ytr, yte = ftr[:, j], fte[:, j]
        if len(np.unique(ytr)) < 2:  # a constant factor carries nothing to predict
            scores.append(float("nan"))
            continue
        model.fit(ztr, ytr)
        r[:, j] = np.abs(model.feature_importances_)
        scores.append(float(model.score(zte, yte)))
    return r, scores


def dci_from_importance(r: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) from an importance matrix R [C, F] (Eastwood & Williams
    2018, weighted as in disentanglement_lib)."""
    r = np.asarray(r, dtype=np.float64)
    total = r.sum()
    if total <= 0:
        return 0.0, 0.0
    n_codes, n_factors = r.shape
    d_per = np.array([1.0 - _normalised_entropy(r[i], n_factors) for i in range(n_codes)])
    c_per = np.array([1.0 - _normalised_entropy(r[:, j], n_codes) for j in range(n_factors)])
    d = float((d_per * r.sum(axis=1) / total).sum())
    c = float((c_per * r.sum(axis=0) / total).sum())
    return d, c


def dci(codes, factors, test_fraction: float = 0.3, seed: int = 0) -> dict:
    """DCI of codes [N, C] against factors [N, F] on a seeded train/test split ->
    {"disentanglement", "completeness", "informativeness" (mean held-out score),
    "informativeness_per_factor", "importance": [C][F]}."""
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64).reshape(len(codes), -1)
    perm = np.random.default_rng(seed).permutation(len(codes))
    n_test = max(1, int(len(codes) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    r, scores = importance_matrix(codes[tr], factors[tr], codes[te], factors[te], seed)
    d, c = dci_from_importance(r)
    valid = [s for s in scores if np.isfinite(s)]
    return {
        "disentanglement": d,
        "completeness": c,
        "informativeness": float(np.mean(valid)) if valid else float("nan"),
        "informativeness_per_factor": [float(s) if np.isfinite(s) else None for s in scores],
        "importance": r.tolist(),
    }
