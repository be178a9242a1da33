"""AppTest of run upload (sidebar) and export (Overview)."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from lifelong import archive


@pytest.fixture
def cleanup(run_roots):
    """Other tests list the runs under good/: the uploaded one must not outlive this test."""
    yield
    shutil.rmtree(run_roots["good"].parent / "tiny-uploaded", ignore_errors=True)


def test_upload_a_run_then_it_is_picked(app, run_roots, cleanup):
    data = archive.export_zip(run_roots["good"])
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():  # renamed, so it does not clash with good/tiny
            out.writestr(info.filename.replace("tiny/", "tiny-uploaded/"), src.read(info))
    app.file_uploader(key="run_zip").set_value(("tiny.zip", buf.getvalue(), "application/zip"))
    app.run()
    assert not app.exception, app.exception
    picker = app.selectbox(key="run_label")
    assert picker.value == "good/tiny-uploaded" and "good/tiny-uploaded" in picker.options
    assert [t.value for t in app.title] == ["tiny-uploaded"]
    assert (run_roots["good"].parent / "tiny-uploaded" / "manifest.json").is_file()


def test_a_bad_upload_says_why_and_changes_nothing(app, run_roots):
    before = sorted(p.name for p in run_roots["good"].parent.iterdir())
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("run/manifest.json", "{}")
        z.writestr("run/weights.pkl", b"\x80\x04K\x01.")
    app.file_uploader(key="run_zip").set_value(("evil.zip", bad.getvalue(), "application/zip"))
    app.run()
    assert not app.exception
    (err,) = [e.value for e in app.error]
    assert err.startswith("evil.zip: member 'run/weights.pkl': only manifest.json")
    assert sorted(p.name for p in run_roots["good"].parent.iterdir()) == before


def test_export_the_run(app):
    app.toggle(key="ov_export").set_value(True).run()
    assert not app.exception
    assert [b.label for b in app.get("download_button")].count("Run folder (.zip)") == 1
