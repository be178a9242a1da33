"""Budgets of the explorer's views, printed side by side (nothing is asserted).

    python bench/bench_views.py [--runs DIR ...] [--repeats 5]

(a) Every page's render once its run is cached: each page runs in Streamlit's AppTest
    (the script in-process, no browser) on the first run given; the first render (model
    load, test data, stored map) is dropped and the median of --repeats reruns is printed.
    Budget: <= 2 s per page on this CPU.
(b) Latent map first paint from the stored time-lapse: the Latent map page's render on a run
    that stores one (`eval --metrics drift --write`: every test image at every snapshot; a
    run trained for one epoch into a temporary folder over six tasks, 5,940 images x 6
    snapshots, unless --map-run is given), server side. Budget: <= 1 s. The browser's first
    paint at 10,000 and 70,000 points: bench/bench_map.py.
(c) Memory: a real `streamlit run app.py` server, with Chromium opening every page on each of
    three runs in turn; the server's peak RSS (VmHWM) is read from /proc. Budget: < 1.5 GB.
(d) dHSIC heatmap for K=6 experts on 512 samples, when lifelong.hsic exists: the pairwise
    HSIC matrix and the joint dHSIC. Budget: <= 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pagelist  # noqa: E402

PAGES = [(p.path, p.title) for p in pagelist.PAGES]
MAP_TASKS = "glyphs,glyphs:invert,glyphs:rotate=90,shapes,shapes:invert,shapes:rotate=90"


def line(name, value, budget, ok) -> str:
    return f"{name:<44} {value:>10}   {budget:<12} {'ok' if ok else 'OVER'}"


def app_for(run: Path):
    """An AppTest of app.py showing only `run` (its parent folder as the run root)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest, app_test

    class V2(PagesManager):  # app.py's st.navigation on every run, as the server does
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            PagesManager.uses_pages_directory = False

    app_test.PagesManager = V2
    os.environ["LIFELONG_RUN_ROOTS"] = str(run.parent)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.selectbox(key="run_label").set_value(f"{run.parent.name}/{run.name}").run()
    return at


def page_times(run: Path, repeats: int) -> dict[str, float]:
    at = app_for(run)
    out = {}
    for path, title in PAGES:
        at.switch_page(path).run()  # first render: loads and caches
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        if at.exception:
            raise SystemExit(f"{title}: {at.exception[0].message}")
        out[title] = statistics.median(times)
    return out


def map_run(tmp: Path) -> Path:
    out = tmp / "maps" / "map-5000"
    out.parent.mkdir(parents=True)
    print(f"training {out.name} over {MAP_TASKS} (1 epoch, for a stored time-lapse) ...")
    cmd = [sys.executable, "-m", "lifelong", "train", "--model", "lmvae", "--epochs", "1"]
    cmd += ["--tasks", MAP_TASKS, "--device", "cpu", "--out", str(out), "--set", "latent_dim=10"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    ev = [sys.executable, "-m", "lifelong", "eval", str(out), "--metrics", "drift", "--write"]
    subprocess.run(ev, cwd=ROOT, check=True, capture_output=True)
    return out


def tiny_run(tmp: Path) -> Path:
    out = tmp / "maps" / "digits-split"
    cmd = [sys.executable, "-m", "lifelong", "train", "--model", "lmvae", "--epochs", "1"]
    cmd += ["--tasks", "digits:classes=0-4,digits:classes=5-9", "--device", "cpu"]
    subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out


def map_paint(run: Path, repeats: int) -> tuple[int, float]:
    from lifelong.runs import open_run

    r = open_run(run)
    stored = r.extra("timelapse", r.snapshots[-1]) or r.extra("map", r.snapshots[-1])
    n = stored["xy"].shape[-2] if stored is not None else 0
    at = app_for(run)
    at.switch_page("views/latent_map.py").run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
    return n, statistics.median(times)


def server_memory(runs: list[Path], tmp: Path) -> float:
    """Peak RSS (GB) of a real server after every page on each run was opened in Chromium."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

    roots = tmp / "three"
    roots.mkdir()
    for r in runs:
        (roots / r.name).symlink_to(r.resolve())
    env = {**os.environ, "LIFELONG_RUN_ROOTS": str(roots)}
    port = free_port()
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, url, log, timeout=120)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            main = page.locator("[data-testid=stMain]")
            for r in runs:
                page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click()
                page.get_by_role("option", name=f"three/{r.name}").click()
                for _, title in PAGES:
                    page.locator("[data-testid=stSidebarNav] a").filter(has_text=title).click()
                    heading = r.name if title == "Overview" else title
                    main.locator("h1").filter(has_text=heading).wait_for()
                    page.wait_for_timeout(1500)
            browser.close()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
        return kb / 2**20
    finally:
        proc.terminate()
        proc.wait(10)


def hsic_time() -> float | None:
    try:
        from lifelong import hsic
    except ImportError:
        return None
    import torch

    torch.manual_seed(0)
    codes = [torch.randn(512, 8) for _ in range(6)]
    fn = getattr(hsic, "pairwise_matrix", None) or hsic.hsic_matrix
    fn(codes)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn(codes)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", help="runs for (a) and (c); default: pretrained/")
    ap.add_argument("--map-run", help="a run with a 5,000-point stored map for (b)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    import torch

    from lifelong import runs as lruns
    from lifelong.zoo import ZOO

    order = {z["name"]: i for i, z in enumerate(ZOO)}  # the app's picker order: L-MVAE first
    shipped = sorted(lruns.find_runs(ROOT / "pretrained"), key=lambda p: order.get(p.name, 99))
    runs = [Path(r) for r in args.runs] if args.runs else shipped
    print(f"torch {torch.__version__}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-views-") as d:
        tmp = Path(d)
        print(f"\n(a) page render with its run cached ({runs[0].name}), median of {args.repeats}")
        for title, s in page_times(runs[0], args.repeats).items():
            print(line(f"  {title}", f"{s:.2f} s", "<= 2 s", s <= 2))
        mrun = Path(args.map_run) if args.map_run else map_run(tmp)
        n, s = map_paint(mrun, args.repeats)
        print("\n(b) latent map first paint from the stored time-lapse (server side)")
        print(line(f"  {n} points", f"{s:.2f} s", "<= 1 s", s <= 1))
        three = list(dict.fromkeys([*runs[:3], mrun]))[:3]
        if len(three) < 3:
            three.append(tiny_run(tmp))
        gb = server_memory(three, tmp)
        names = ", ".join(r.name for r in three)
        print(f"\n(c) server memory, every page on {len(three)} runs: {names}")
        print(line("  peak RSS", f"{gb:.2f} GB", "< 1.5 GB", gb < 1.5))
        h = hsic_time()
        print("\n(d) dHSIC heatmap, K=6 experts, 512 samples")
        if h is None:
            print("  lifelong.hsic is not there yet")
        else:
            print(line("  pairwise HSIC + joint dHSIC", f"{h * 1e3:.0f} ms", "<= 200 ms", h <= 0.2))


if __name__ == "__main__":
    main()
