"""The conformance kit (lifelong.testing) on every family of the project and on the plugin
example, and a broken family it catches."""

import pytest
import torch

from lifelong import models
from lifelong.testing import (
    ConformanceError,
    check_capabilities,
    check_family,
    check_hooks,
    check_interface,
)
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
        check_capabilities(model)


def _vae():
    cfg = build_config("vae", ["digits"], {"latent_dim": 2, "hidden": 16, "channels": 4})
    return models.build("vae", cfg).eval()


def test_a_capability_declared_but_not_there_is_caught():
    model = _vae()
    model.capabilities = models.Capabilities(mixture=True)
    with pytest.raises(ConformanceError, match="mixture=True but experts"):
        check_capabilities(model)
    model.capabilities = models.Capabilities(populations=True)
    with pytest.raises(ConformanceError, match="populations=True but no reconstruct_parts"):
        check_capabilities(model)
    model.capabilities = models.Capabilities(sampling=False)
    model.sample = None  # a family that does not generate is not asked to
    check_capabilities(model)


def test_untyped_events_and_a_frozen_parameter_that_moves_are_caught():
    model = _vae()
    model.before_task = lambda task, data: [{"type": "mixing", "task": task}]  # noqa: ARG005
    with pytest.raises(ConformanceError, match=r"before_task\(0\) returned .* not an events"):
        check_hooks(model)

    model = _vae()
    step = model.train_step

    def freeze_decoder(task, data):  # noqa: ARG001
        for p in model.net.dec_body.parameters():
            p.requires_grad_(False)
        return []

    def shrinking_step(batch, task, optimizers):  # a step that also decays every weight
        terms = step(batch, task, optimizers)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.99)
        return terms

    model.before_task, model.train_step = freeze_decoder, shrinking_step
    with pytest.raises(ConformanceError, match="frozen parameter .* changed in task 1"):
        check_hooks(model)
