"""The batch device in the app (issue 18 part 4) on a CPU-only machine: no setting in the
sidebar (nothing changes there), one line for an invalid LIFELONG_APP_DEVICE or one asking
for CUDA, and the setting offered where CUDA is available (faked here; tests/gpu/ has the
real thing)."""

from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest

import ui
from lifelong.explore import device
from tests.app.conftest import APP


def open_app(page: str = "views/traversal.py") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def sidebar_keys(at) -> set:
    return {w.key for w in at.sidebar.selectbox}


def test_cpu_only_sidebar_has_no_device_setting(run_roots, v2_navigation, monkeypatch):
    monkeypatch.delenv(device.ENV, raising=False)
    at = open_app()
    assert ui.DEVICE_KEY not in sidebar_keys(at)
    assert not at.sidebar.warning and not at.error
    assert [t.value for t in at.title] == ["Latent traversal"]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("gpu", "LIFELONG_APP_DEVICE='gpu' is not one of auto, cpu, cuda: using auto."),
        ("cuda", "cuda was asked for but no CUDA device is available here: using the CPU."),
    ],
)
def test_an_env_value_that_cannot_apply_is_one_line(
    run_roots, v2_navigation, monkeypatch, value, line
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(device.ENV, value)
    at = open_app()
    assert [w.value for w in at.sidebar.warning] == [line]
    assert not at.error and at.get("component_instance")  # the page works, on the CPU
    assert ui.DEVICE_KEY not in sidebar_keys(at)


def test_where_cuda_is_available_the_sidebar_offers_the_setting(
    run_roots, v2_navigation, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(device.ENV, "cpu")  # this machine has no CUDA to load models on
    at = open_app("views/overview.py")
    setting = at.sidebar.selectbox(key=ui.DEVICE_KEY)
    assert setting.value == "cpu" and list(setting.options) == ["auto", "cpu", "cuda"]
    assert not at.sidebar.warning and not at.error
