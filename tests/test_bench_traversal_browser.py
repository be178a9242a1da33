"""bench/bench_traversal_browser.py still runs (bench/ is not imported by the package, so
nothing else would notice it rot): --quick, on the first shipped run, prints every section;
the drag painted frames in the page and told the server nothing while it lasted."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "bench_traversal_browser.py"
RUN = "pretrained/lmvae-digits-glyphs-shapes"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium"),
    pytest.mark.skipif(not (ROOT / RUN / "manifest.json").is_file(), reason=f"no {RUN}"),
]


def test_bench_traversal_browser_quick(capsys):
    pytest.importorskip("playwright.async_api")
    spec = importlib.util.spec_from_file_location("bench_traversal_browser", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--run", RUN]) == 0
    out = capsys.readouterr().out
    for section in ("(a) in-page panel, first frame", "(b) in-page panel", "(c) today's"):
        assert section in out
    frames = int(re.search(r"frames painted (\d+):", out)[1])
    assert frames > 5
    assert "values sent to the server during the drag: 0" in out
    assert re.search(r"key press -> new image p50 [0-9.]+ ms", out)
