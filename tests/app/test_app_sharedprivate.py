"""AppTest of the Shared / private page: on a tiny CPVAE run (trained here through the CLI) it
draws Fig. 2, Fig. 4, the swap and the ARI table; on the tiny L-MVAE run it says plainly that
it needs CPVAE."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.app.conftest import APP


@pytest.fixture(scope="module")
def cpvae_run(tmp_path_factory):
    """<tmp>/sp-runsN/cpvae: two populations of digits (0-4, 5-9), 1 epoch, small networks."""
    from lifelong.__main__ import main

    out = tmp_path_factory.mktemp("sp-runs") / "cpvae"
    args = ["train", "--model", "cpvae", "--tasks", "digits:classes=0-4,digits:classes=5-9"]
    args += ["--epochs", "1", "--device", "cpu", "--out", str(out)]
    args += ["--set", "latent_dim=4", "--set", "private_dim=4"]
    args += ["--set", "hidden=32", "--set", "channels=8"]
    assert main(args) == 0
    # Table 1's plain VAE beside it: the same tasks, in the same root
    vae = ["train", "--model", "vae", "--tasks", "digits:classes=0-4,digits:classes=5-9"]
    vae += ["--epochs", "1", "--device", "cpu", "--out", str(out.parent / "vae")]
    vae += ["--set", "joint=true", "--set", "latent_dim=8", "--set", "hidden=32"]
    assert main([*vae, "--set", "channels=8"]) == 0
    return out


@pytest.fixture
def app(cpvae_run, tiny_run, media, v2_navigation, monkeypatch):
    """The app on the CPVAE run's Shared / private page; the L-MVAE run is in the picker too."""
    from streamlit.testing.v1 import AppTest

    roots = os.pathsep.join([str(cpvae_run.parent), str(tiny_run.parent)])
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", roots)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.selectbox(key="run_label").set_value(f"{cpvae_run.parent.name}/cpvae").run()
    at.switch_page("views/sharedprivate.py").run()
    assert not at.exception, at.exception
    return at


def _images(at):
    return [(im.value[0], im.captions[0]) for im in at.get("image")]


def test_grids_table_and_controls(app, media):
    assert [t.value for t in app.title] == ["Shared / private"]
    assert not app.error and not app.info
    shown = _images(app)
    assert len(shown) == 3  # Fig. 2, Fig. 4, the swap
    assert "shared only" in shown[0][1] and "f_s(z) + f_1(t)" in shown[1][1]
    fig2 = media(shown[0][0])
    assert fig2.shape == (4 * 58 + 2, 8 * 58 + 2, 3)  # 4 rows of 8 inputs, 28 px at 2x
    labels = [b.label for b in app.get("download_button")]
    assert labels.count("PNG") == 3 and "CSV" in labels
    (table,) = app.dataframe
    assert list(table.value.columns) == ["population", "class", "class within population"]
    # the plain VAE over the same tasks is offered and shown first (Table 1's first row)
    options = app.selectbox(key="sp_vae").options
    assert len(options) == 2 and options[0].endswith("/vae") and options[1] == "none"
    assert list(table.value.index) == ["plain VAE (vae)", "shared z", "private t"]
    values = table.value.to_numpy(dtype=float)
    assert np.all((values[~np.isnan(values)] >= -1) & (values[~np.isnan(values)] <= 1))
    assert any("Population accuracy" in m.value for m in app.markdown)

    app.number_input(key="sp_seed").set_value(3).run()
    assert not np.array_equal(media(_images(app)[0][0]), fig2)  # other inputs drawn
    app.selectbox(key="sp_pop").set_value(1).run()
    app.selectbox(key="sp_other").set_value(1).run()
    app.number_input(key="sp_n").set_value(4).run()
    app.toggle(key="sp_classify").set_value(True).run()
    app.number_input(key="sp_score_n").set_value(100).run()
    app.selectbox(key="sp_vae").set_value("none").run()
    assert list(app.dataframe[0].value.index) == ["shared z", "private t"]
    assert not app.exception, app.exception
    assert not app.error
    shown = _images(app)
    assert len(shown) == 3 and media(shown[0][0]).shape[1] == 4 * 58 + 2
    assert any("decoded as population" in c.value for c in app.caption)


def test_other_families_get_a_note(app, tiny_run):
    app.selectbox(key="run_label").set_value(f"{tiny_run.parent.name}/tiny").run()
    assert not app.exception, app.exception
    assert [t.value for t in app.title] == ["Shared / private"]
    (note,) = app.info
    assert "CPVAE" in note.value and "lmvae" in note.value
    assert "sp-runs" in note.value  # points to the CPVAE run in the picker
    assert not app.get("image")
