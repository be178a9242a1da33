"""The feature classifier behind the "Frechet distance (classifier features)".

Paper 001 (App. 9.10) measures sample quality as the Frechet distance between Gaussian fits of
a trained classifier's features on generated and on real test images (the idea of FID, but with
a classifier of the data at hand instead of Inception). This module trains that classifier on
the project's embedded datasets, so the metric needs no download: a small conv net over every
class of `digits`, `glyphs` and `shapes` (and `textured` when that dataset is registered), each
shown plain and inverted as distinct classes, since the shipped task sequences use inverted
domains (glyphs:invert) and a polarity-blind feature space could not tell them apart.

Runs over real Fashion-MNIST are scored with a second classifier of the same architecture
trained on Fashion-MNIST's ten classes (`feature-classifier-fashion.safetensors`, built by
`pretrain` where the Debian package is installed): features of digits and glyphs say little
about clothes, and App. 9.10's classifier is one of the data at hand. `classifier_path_for`
picks the file from a run's task specs.

It is NOT FID: the features are this classifier's, so values are comparable only between runs
scored with the same classifier file (its sha256 is recorded with every stored value).

    build_classifier(out_path) -> metadata    (python -m lifelong pretrain --only classifier)
    build_classifier(FASHION_PATH, datasets=FASHION_DATASETS, invert=False, epochs=15)
    load_classifier(path=None) -> FeatureClassifier (eval mode), ClassifierError if unusable
    classifier_path_for(task_specs) -> the file that scores a run over those tasks
    classifier.features(x) -> [N, 64] for images of any shape in [0, 1]
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "lifelong-classifier/1"
META_KEY = "lifelong-classifier"
DEFAULT_PATH = (
    Path(__file__).resolve().parent.parent / "pretrained" / "feature-classifier.safetensors"
)
DATASETS = ("digits", "glyphs", "shapes", "textured")  # those registered at build time are used
FASHION_PATH = DEFAULT_PATH.with_name("feature-classifier-fashion.safetensors")
FASHION_DATASETS = ("fashion",)
SIZE = 28


class ClassifierError(ValueError):
    """The feature classifier file is missing, corrupt or foreign (one-line message)."""


def prepare(x: torch.Tensor) -> torch.Tensor:
    """Any images [N, C, H, W] in [0, 1] -> the classifier's input [N, 1, 28, 28]: RGB is
    averaged to grey and other sizes are resized (bilinear, antialiased)."""
    if x.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(x.shape)}")
    x = x.float()
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)
    return x.clamp(0.0, 1.0)


class FeatureClassifier(nn.Module):
    """x [N, 1, 28, 28] -> conv 16/32/32 (stride 2 each: 14, 7, 4) -> 512 -> features [N, 64]
    -> ReLU -> logits [N, classes]. The features are the penultimate layer before its ReLU:
    a linear projection, so no unit is stuck at zero and the covariance stays well-posed;
    `features` standardises them with fixed training-set statistics."""

    def __init__(self, n_classes: int, width: int = 16, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
        )
        self.head = nn.Linear(feature_dim, n_classes)
        # Fixed standardisation of the features by their training-set statistics (set once by
        # build_classifier): distances read in units of the real data's per-feature spread
        # (digits train vs test ~6, digits vs noise ~650) instead of raw activations.
        self.register_buffer("feat_mean", torch.zeros(feature_dim))
        self.register_buffer("feat_std", torch.ones(feature_dim))
        self.meta: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(x)))

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Standardised penultimate features [N, feature_dim] (float32, CPU) of images of any
        shape."""
        dev = next(self.parameters()).device
        out = [
            ((self.body(prepare(x[i : i + batch_size]).to(dev)) - self.feat_mean) / self.feat_std)
            .float()
            .cpu()
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.head.in_features)


def classifier_path_for(task_specs) -> Path:
    """The classifier file that scores a run over `task_specs`: the Fashion-MNIST one when every
    task is Fashion-MNIST, the embedded datasets' one otherwise (a mixed sequence keeps the
    embedded one, whose classes cover most of it)."""
    from lifelong.data.registry import parse_spec

    try:
        names = {parse_spec(s).info.name for s in task_specs}
    except ValueError:
        return DEFAULT_PATH
    return FASHION_PATH if names and names <= set(FASHION_DATASETS) else DEFAULT_PATH


def training_data(
    split: str, seed: int = 0, datasets: tuple[str, ...] = DATASETS, invert: bool = True
):
    """(x [N, 1, 28, 28], y [N], class names, dataset names): every class of the registered
    datasets in `datasets`, plain and, with `invert`, inverted (label offset by the plain
    class count)."""
    from lifelong.data import load_task
    from lifelong.data.registry import REGISTRY

    xs, ys, names, used = [], [], [], []
    for name in datasets:
        if name not in REGISTRY:
            continue
        d = load_task(name, split, seed)
        xs.append(prepare(d.x))
        ys.append(d.y + len(names))
        names += [f"{name}/{c}" for c in d.classes]
        used.append(name)
    x, y = torch.cat(xs), torch.cat(ys)
    if not invert:
        return x, y, names, used
    n_plain = len(names)
    x = torch.cat([x, 1.0 - x])
    y = torch.cat([y, y + n_plain])
    names = names + [f"{n}:invert" for n in names]
    return x, y, names, used


def build_classifier(
    out_path: str | Path = DEFAULT_PATH,
    epochs: int = 20,
    seed: int = 0,
    device: str = "cpu",
    datasets: tuple[str, ...] = DATASETS,
    invert: bool = True,
) -> dict:
    """Train the feature classifier on `datasets` and save it (safetensors, metadata: format,
    datasets, classes, test accuracy) atomically to `out_path`. Returns the metadata.
    Deterministic given the seed on CPU; ~50 s on one core for the embedded one (test accuracy
    ~0.92 over 126 classes)."""
    from safetensors.torch import save

    from lifelong.runs import atomic_write

    torch.manual_seed(seed)
    x, y, classes, used = training_data("train", seed, datasets, invert)
    xt, yt, _, _ = training_data("test", seed, datasets, invert)
    model = FeatureClassifier(len(classes)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(x) / 128))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            xb = x[idx]
            # one-pixel random shifts: generated samples are rarely centred exactly
            sh = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=sh, dims=(2, 3))
            loss = F.cross_entropy(model(xb.to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        raw = torch.cat([model.body(x[i : i + 512].to(device)) for i in range(0, len(x), 512)])
        model.feat_mean.copy_(raw.mean(0))
        model.feat_std.copy_(raw.std(0).clamp_min(1e-6))
        pred = torch.cat(
            [model(xt[i : i + 512].to(device)).argmax(1).cpu() for i in range(0, len(xt), 512)]
        )
    meta = {
        "format": FORMAT,
        "datasets": used,
        "classes": classes,
        "input": [1, SIZE, SIZE],
        "width": 16,
        "feature_dim": model.head.in_features,
        "test_accuracy": round(float((pred == yt).float().mean()), 4),
        "epochs": epochs,
        "seed": seed,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, save(state, metadata={META_KEY: json.dumps(meta, sort_keys=True)}))
    return meta


def load_classifier(path: str | Path | None = None, device: str = "cpu") -> FeatureClassifier:
    """Load and validate the feature classifier; `classifier.meta` holds its metadata plus
    "sha256". Raises ClassifierError with one line saying what is wrong and how to rebuild."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path) if path is not None else DEFAULT_PATH
    fix = "rebuild it with: python -m lifelong pretrain --only classifier"
    try:
        data = path.read_bytes()
    except OSError:
        raise ClassifierError(f"feature classifier not found at {path}; {fix}") from None
    try:
        state = load(data)
        # safetensors.torch.load drops the metadata: read it from the header (8-byte length, JSON)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "null"))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ClassifierError(f"feature classifier {path} is corrupt ({exc}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ClassifierError(f"{path} is not a {FORMAT} file (format {found!r}); {fix}")
    try:
        model = FeatureClassifier(len(meta["classes"]), meta["width"], meta["feature_dim"])
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ClassifierError(
            f"feature classifier {path} does not match its metadata ({first}); {fix}"
        ) from None
    model.meta = {**meta, "sha256": hashlib.sha256(data).hexdigest(), "path": str(path)}
    return model.to(device).eval()
