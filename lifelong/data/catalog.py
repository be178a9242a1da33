"""The datasets of the registry (registry.py holds the spec grammar and `load_task`): each is
one `register(DatasetInfo(...))` call with a loader returning `Raw`. Imported by the package,
so every name is registered before any spec is parsed."""

from __future__ import annotations

import os

from . import embedded, files, glyphs, idx, textured
from .base import DataError
from .registry import REGISTRY, DatasetInfo, Raw, register


def _digits(split: str, seed: int, path: str | None) -> Raw:
    x, y = embedded.digits(split)
    return Raw(x, y, embedded.DIGIT_CLASSES)


def _glyphs(split: str, seed: int, path: str | None) -> Raw:
    x, y = glyphs.glyphs(split, seed)
    return Raw(x, y, glyphs.GLYPH_CLASSES)


def _shapes(split: str, seed: int, path: str | None) -> Raw:
    x, y, f = embedded.shapes(split, seed)
    return Raw(x, y, embedded.SHAPE_CLASSES, f, embedded.SHAPE_FACTORS)


def _textured(split: str, seed: int, path: str | None, **own) -> Raw:
    x, y, classes, f = textured.textured(split, seed, **own)
    return Raw(x, y, classes, f, list(textured.FACTORS))


def _idx_loader(name: str, classes: list[str], hint: str = ""):
    def load(split: str, seed: int, path: str | None) -> Raw:
        directory = path
        if directory is None:  # only reached for path="optional": use the default folder
            default = REGISTRY[name].default_path
            if default is None or not os.path.isdir(default):
                raise DataError(f"'{name}': no files at {default}; {hint}")
            directory = default
        x, y = idx.load_idx_split(directory, split, len(classes))
        return Raw(x, y, classes)

    return load


register(DatasetInfo(
    name="digits",
    purpose="real handwritten digits (scikit-learn 8x8) fitted MNIST-style; a small MNIST",
    load=_digits, classes=tuple(embedded.DIGIT_CLASSES),
    train=embedded.DIGITS_TRAIN, test=embedded.DIGITS_TEST,
))  # fmt: skip
register(DatasetInfo(
    name="glyphs",
    purpose="font-rendered letters and digits (49 classes), a second domain for sequences",
    load=_glyphs, classes=tuple(glyphs.GLYPH_CLASSES),
    train=glyphs.GLYPHS_TRAIN, test=glyphs.GLYPHS_TEST,
))  # fmt: skip
register(DatasetInfo(
    name="shapes",
    purpose="dSprites-like shapes with ground-truth factors, for disentanglement metrics",
    load=_shapes, classes=tuple(embedded.SHAPE_CLASSES),
    train=4 * embedded.SHAPES_PER_CLASS["train"], test=4 * embedded.SHAPES_PER_CLASS["test"],
    extra={"factors": list(embedded.SHAPE_FACTORS)},
))  # fmt: skip
register(DatasetInfo(
    name="mnist", purpose="MNIST handwritten digits from your IDX files",
    load=_idx_loader("mnist", idx.MNIST_CLASSES), classes=tuple(idx.MNIST_CLASSES),
    train="from files", test="from files", path="required",
))  # fmt: skip
register(DatasetInfo(
    name="fashion",
    purpose="Fashion-MNIST clothing from IDX files (default: Debian dataset-fashion-mnist)",
    load=_idx_loader("fashion", idx.FASHION_CLASSES, hint=(
        "pass fashion:path=DIR (a folder with the IDX files) "
        "or apt-get install dataset-fashion-mnist"
    )),
    classes=tuple(idx.FASHION_CLASSES), train="from files", test="from files",
    path="optional", default_path=idx.FASHION_DEFAULT_DIR,
))  # fmt: skip
register(DatasetInfo(
    name="kmnist", purpose="Kuzushiji-MNIST cursive hiragana from your IDX files",
    load=_idx_loader("kmnist", idx.KMNIST_CLASSES), classes=tuple(idx.KMNIST_CLASSES),
    train="from files", test="from files", path="required",
))  # fmt: skip
register(DatasetInfo(
    name="textured",
    purpose="digits (or glyphs) over procedural textures, labelled by foreground class: "
    "CPVAE's Grassy-MNIST (shared background, private foreground; classes= makes populations)",
    load=_textured, classes=None, train=embedded.DIGITS_TRAIN, test=embedded.DIGITS_TEST,
    extra={"classes": "10/49", "factors": list(textured.FACTORS)},
    own_options={
        "fg": textured.FOREGROUNDS,
        "texture": textured.TEXTURES,
        "level": tuple(textured.LEVELS),
    },
))  # fmt: skip


def _file_loader(name: str, read):
    def load(split: str, seed: int, path: str | None, mode: str | None = None) -> Raw:
        mode = mode or REGISTRY[name].own_options["mode"][0]
        if name == "folder":
            x, y, classes = read(path, split, mode)
        else:
            x, y = read(path, split, mode)
            classes = list(REGISTRY[name].classes)
        return Raw(x, y, classes)

    return load


register(DatasetInfo(
    name="svhn", purpose="SVHN house-number digits from your train/test_32x32.mat (colour)",
    load=_file_loader("svhn", files.svhn), classes=tuple(files.SVHN_CLASSES),
    train="from files", test="from files", path="required", shape=(3, 32, 32),
    own_options={"mode": files.MODES},
))  # fmt: skip
register(DatasetInfo(
    name="cifar10", purpose="CIFAR-10 from your binary-version batches (*.bin; no pickles)",
    load=_file_loader("cifar10", files.cifar10), classes=tuple(files.CIFAR10_CLASSES),
    train="from files", test="from files", path="required", shape=(3, 32, 32),
    own_options={"mode": files.MODES},
))  # fmt: skip
register(DatasetInfo(
    name="folder", purpose="your images, one sub-folder per class (DIR/train + DIR/test or "
    "a fixed 85/15 split), any format PIL reads",
    load=_file_loader("folder", files.folder), classes=None,
    train="from files", test="from files", path="required",
    own_options={"mode": ("grey", "rgb")},
))  # fmt: skip
