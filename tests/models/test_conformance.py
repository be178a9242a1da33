"""The conformance kit (lifelong.testing) on every family of the project and on the plugin
example, and a broken family it catches."""

import pytest
import torch

from lifelong import models
from lifelong.testing import ConformanceError, check_family, check_interface
from lifelong.train.trainer import build_config


@pytest.mark.parametrize("key", [*sorted(models.REGISTRY), "tests.plugins.tinyfamily:TinyFamily"])
def test_every_family_conforms(key, tmp_path):
    check_family(key, tmp_path)


def test_a_family_that_leaves_the_image_range_is_caught():
    cfg = build_config("vae", ["digits"], {"latent_dim": 2, "hidden": 16, "channels": 4})
    model = models.build("vae", cfg).eval()
    model.reconstruct = lambda x, expert=None: x * 2  # noqa: ARG005 (a broken family)
    with pytest.raises(ConformanceError, match=r"reconstruct\(x\) leaves \[0, 1\]"):
        check_interface(model)
    model = models.build("vae", cfg).eval()
    model.sample = lambda n, task=None, expert=None: torch.rand(n + 1, 1, 28, 28)  # noqa: ARG005
    with pytest.raises(ConformanceError, match=r"sample\(3\) has shape"):
        check_interface(model)
