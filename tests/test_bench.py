"""The training benchmark still runs (bench/ is not imported by the package, so nothing else
would notice it rot): two steps per side, every family with paper terms gets its
same-objective column."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_train.py"


def test_bench_train_prints_all_three_sides(capsys):
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fams = ["vae", "lgm", "mvae", "cpvae", "infogan"]
    assert bench.main(["--families", ";".join(fams), "--steps", "2", "--chunk", "1"]) == 0
    rows = {ln.split("|")[0].strip(): ln.split("|") for ln in capsys.readouterr().out.splitlines()}
    for fam in fams:
        cells = [c.strip() for c in rows[fam]]
        assert float(cells[1]) > 0 and float(cells[2]) > 0  # family and bare images/s
        if fam in bench.FULL:
            assert float(cells[4]) > 0 and float(cells[5]) > 0  # same objective and its ratio
        else:
            assert cells[4] == cells[5] == "-"


def test_bench_bombs_prints_every_refusal(capsys):
    """bench_bombs --quick: every bomb gets its row from a fresh child, and the zip bombs are
    refused with nothing written."""
    path = BENCH.with_name("bench_bombs.py")
    spec = importlib.util.spec_from_file_location("bench_bombs", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "child failed" not in out
    rows = {ln.split(")")[0] + ")": ln for ln in out.splitlines() if ln.startswith("(")}
    assert sorted(rows) == sorted(f"({k})" for k in bench.KINDS)
    for kind in ("a", "b", "d2"):
        cells = rows[f"({kind})"].split()
        assert "ArchiveError:" in cells and cells[cells.index("ArchiveError:") - 4] == "0"


def test_bench_long_quick_prints_every_section(capsys):
    """bench_long --quick: two tiny digit sequences (2 and 3 tasks) trained by the command
    line, each with a step row per task, a timing per task, a render of every page and its
    size on disk."""
    path = BENCH.with_name("bench_long.py")
    spec = importlib.util.spec_from_file_location("bench_long", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    sections = {ln[:3] for ln in out.splitlines() if ln[:3] in {"(a)", "(b)", "(c)", "(d)"}}
    assert sections == {"(a)", "(b)", "(c)", "(d)"}
    steps = [ln.split() for ln in out.split("(a)")[1].split("(b)")[0].splitlines()[2:] if ln]
    assert [(int(r[0]), int(r[1])) for r in steps] == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in steps)
    # evaluate selecting once gives the metrics of selecting three times, as before
    assert out.split("(b)")[1].count("same metrics: yes") == 2
    pages = out.split("(c)")[1].split("(d)")[0]
    for _, title in bench.bench_views.PAGES:
        assert title in pages
    assert "a run made before the stored table" in pages
    sizes = [ln.split() for ln in out.split("(d)")[1].splitlines() if ln.strip()[:1].isdigit()]
    assert [int(r[0]) for r in sizes[:2]] == [2, 3] and all(float(r[1]) > 0 for r in sizes[:2])


def test_bench_device_prints_the_cpu_and_skips_cuda_without_one(capsys, monkeypatch):
    """bench_device on a CPU-only machine: one image's decode and the batch work on the CPU,
    the CUDA column skipped with a line (issue 18 part 4)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = importlib.util.spec_from_file_location(
        "bench_device", BENCH.with_name("bench_device.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    n = torch.get_num_threads()
    try:
        assert bench.main(["--repeats", "3", "--points", "64"]) == 0
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert "CUDA device: none" in out and out.count("cuda: skipped, no CUDA device here") == 2
    assert " ms (p95 " in out.split("cpu, traced, 1 thread")[1].splitlines()[0]
    assert "encode 64 images" in out and "  cpu   encode" in out
