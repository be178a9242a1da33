"""Fixtures for the Streamlit AppTests: a tiny trained run, broken copies of it, and the app.

The app lists the runs under the folders named by LIFELONG_RUN_ROOTS (ui.run_roots), so the
tests never depend on what pretrained/ or runs/ hold:

    <tmp>/good/tiny          a 2-task L-MVAE on digits (latent_dim=4), trained in a few seconds
    <tmp>/bad/tiny-broken    the same with task-00.safetensors truncated (open_run refuses it)
    <tmp>/bad/tiny-corrupt   the same with task-01.safetensors altered in place, same size
                             (the run opens; loading snapshot 1 fails its checksum)
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
GOOD = "good/tiny"
BROKEN = "bad/tiny-broken"
CORRUPT = "bad/tiny-corrupt"


@pytest.fixture(scope="session")
def run_roots(tmp_path_factory, tiny_run):
    """Paths of the good and broken runs; LIFELONG_RUN_ROOTS points the app at them."""
    base = tmp_path_factory.mktemp("lifelong-runs")
    good = base / "good" / "tiny"
    shutil.copytree(tiny_run, good)
    broken = base / "bad" / "tiny-broken"
    shutil.copytree(good, broken)
    snap = broken / "task-00.safetensors"
    snap.write_bytes(snap.read_bytes()[:1000])
    corrupt = base / "bad" / "tiny-corrupt"
    shutil.copytree(good, corrupt)
    snap = corrupt / "task-01.safetensors"
    data = bytearray(snap.read_bytes())
    data[-64:] = bytes(64)  # same size, different bytes: only the checksum notices
    snap.write_bytes(bytes(data))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONG_RUN_ROOTS", os.pathsep.join([str(base / "good"), str(base / "bad")]))
        yield {"good": good, "broken": broken, "corrupt": corrupt}


@pytest.fixture
def media(monkeypatch):
    """Record every media file AppTest stores; returns url -> bytes lookups.

    AppTest throws its in-memory media storage away after each run, so the image bytes
    behind an st.image URL are kept here to compare decoded pixels between reruns.
    """
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    files: dict[str, bytes] = {}

    class Recording(MemoryMediaFileStorage):
        def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
            file_id = super().load_and_get_id(path_or_data, mimetype, kind, filename)
            files[self.get_url(file_id)] = self._files_by_id[file_id].content
            return file_id

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)

    def pixels(url: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(files[url])).convert("RGB"))

    return pixels


@pytest.fixture
def v2_navigation(monkeypatch):
    """Make every AppTest run execute app.py (st.navigation), as the real server does.

    The views live in views/, not pages/, so Streamlit's legacy (v1) multipage mode never
    starts (with a pages/ folder beside app.py, a direct link to /dhsic in a fresh server ran
    the page file alone, without app.py's navigation and sidebar). This guard keeps AppTest,
    which resets PagesManager.uses_pages_directory before each run, on st.navigation even if
    a pages/ folder ever comes back.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class V2PagesManager(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", V2PagesManager)


@pytest.fixture
def app(run_roots, media, v2_navigation):
    """The app after its first run on the default (Overview) page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The app runs torch on 1 thread (ui.py sets it once, at import); the rest of the suite
    gets its own setting back after each app test."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
