"""What refusing a resource bomb costs (printed, nothing asserted; issue 14's budget: well under
200 MB of memory and no more disk than the input's own size).

    python bench/bench_bombs.py [--size-mb 1000] [--only a,b,c,c2,d,d2,e] [--quick]

Bombs, generated into a temporary folder (nothing large is ever committed):
(a)  zip of a shipped run (vae-grassy) plus four members of zeros, honest headers, that unpack
     to --size-mb in all: lifelong.archive.import_zip
(b)  the same run whose log.jsonl's headers (local and central) declare 1,000 bytes but whose
     data inflates to --size-mb: import_zip
(c)  a gzipped IDX image file (magic 0x00000803) declaring and inflating to --size-mb, with its
     labels: lifelong.data.load_task("mnist:path=DIR", "train", 0)
(c2) the same with a header declaring 10,000 images (and 10,000 labels) while the image
     data inflates to --size-mb
(d)  the shipped run with its manifest's config edited to hidden=150000 (GBs of weights):
     runs.open_run(path).load_model()
(d2) (d) zipped with archive.export_zip and uploaded: import_zip
(e)  `python -m lifelong train --model vae --tasks digits:classes=0-1 --set hidden=100000000`,
     as lifelong.__main__.main([...]) in the child

Each refusal runs in a fresh interpreter (`--child KIND`) that imports everything first, then
resets its peak RSS (/proc/self/clear_refs), so "RSS +MB" is VmHWM during the call above
VmRSS before it. "disk peak" is the largest total size of the files under the call's
destination, polled every 2 ms by a thread ("after": what the call left, 0 for a
refusal); "written" is the child's write() bytes during the call (/proc/self/io wchar,
which also counts its few bytes to pipes). A child that allocates past 4 GB more than
its baseline address space gets a MemoryError (a safety limit, RLIMIT_AS), reported as such.
--quick (for the smoke test) makes 64 MB bombs: the same refusals, seconds to build.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE_RUN = ROOT / "pretrained" / "vae-grassy"
KINDS = {
    "a": "zip, honest headers",
    "b": "zip, header understates",
    "c": "gzipped IDX (mnist:path=)",
    "c2": "gzipped IDX, header understates",
    "d": "manifest hidden=150000",
    "d2": "upload of (d)",
    "e": "train --set hidden=1e8",
}
MB = 2**20


def _zeros(fh, total: int) -> None:
    block = bytes(MB)
    for i in range(0, total, MB):
        fh.write(block[: min(MB, total - i)])


def make_bombs(work: Path, size: int) -> dict[str, Path]:
    """Every bomb's input under `work`: kind -> the path its child opens."""
    from lifelong import archive

    base = archive.export_zip(BASE_RUN)
    with zipfile.ZipFile(work / "a.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with zipfile.ZipFile(io.BytesIO(base)) as src:
            for info in src.infolist():
                z.writestr(info.filename, src.read(info))
        for i in range(4):
            with z.open(f"vae-grassy/evaldata-0{i + 2}.safetensors", "w") as fh:
                _zeros(fh, size // 4)
    with zipfile.ZipFile(work / "b.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with zipfile.ZipFile(io.BytesIO(base)) as src:
            for info in src.infolist():
                if not info.filename.endswith("log.jsonl"):
                    z.writestr(info.filename, src.read(info))
        with z.open("vae-grassy/log.jsonl", "w") as fh:
            _zeros(fh, size)
    _understate(work / "b.zip", "vae-grassy/log.jsonl", 1000)
    idx = work / "mnist"
    idx.mkdir()
    n = size // (28 * 28)
    with gzip.open(idx / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as fh:
        fh.write(struct.pack(">IIII", 0x00000803, n, 28, 28))
        _zeros(fh, n * 28 * 28)
    with gzip.open(idx / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 0x00000801, n))
        _zeros(fh, n)
    lying = work / "mnist-lying"  # declares 10,000 images, inflates to `size`
    lying.mkdir()
    with gzip.open(lying / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as fh:
        fh.write(struct.pack(">IIII", 0x00000803, 10_000, 28, 28))
        _zeros(fh, size)
    with gzip.open(lying / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 0x00000801, 10_000) + bytes(10_000))
    run = work / "d" / "vae-grassy"
    shutil.copytree(BASE_RUN, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["hidden"] = 150000
    (run / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (work / "d2.zip").write_bytes(archive.export_zip(run))
    return {
        **{"a": work / "a.zip", "b": work / "b.zip", "c": idx, "c2": lying},
        **{"d": run, "d2": work / "d2.zip"},
    }


def _understate(path: Path, member: str, declared: int) -> None:
    """Patch the member's uncompressed size in its local header and central entry."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        h = z.getinfo(member).header_offset
    struct.pack_into("<I", data, h + 22, declared)
    c = data.find(b"PK\x01\x02")
    while data[c + 46 : c + 46 + len(member)] != member.encode():
        c = data.find(b"PK\x01\x02", c + 1)
    struct.pack_into("<I", data, c + 24, declared)
    path.write_bytes(bytes(data))


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text)[1]) * 1024 for k in ("VmHWM", "VmRSS")}


def _wchar() -> int:
    return int(re.search(r"wchar:\s+(\d+)", Path("/proc/self/io").read_text())[1])


def _disk(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(folder, n)).st_size
            except OSError:
                pass
    return total


def child(kind: str, work: Path) -> dict:
    """Run one refusal in this (fresh) process and measure it; returns the figures."""
    import torch  # noqa: F401  (imported before the baseline, as the app has it)

    from lifelong import archive, runs
    from lifelong import data as ldata
    from lifelong.__main__ import main

    dest = work / f"dest-{kind}"
    dest.mkdir()
    src = work / {"a": "a.zip", "b": "b.zip", "d2": "d2.zip"}.get(kind, "")
    payload = src.read_bytes() if kind in ("a", "b", "d2") else None
    cap = resource.getrlimit(resource.RLIMIT_AS)[1]
    vm = int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text())[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 4 * 2**30, cap))

    def call() -> str:
        if kind in ("a", "b", "d2"):
            return f"accepted: {archive.import_zip(payload, dest).name}"
        if kind in ("c", "c2"):
            folder = work / ("mnist" if kind == "c" else "mnist-lying")
            task = ldata.load_task(f"mnist:path={folder}", "train", 0)
            return f"accepted: {len(task)} images"
        if kind == "d":
            runs.open_run(work / "d" / "vae-grassy").load_model()
            return "accepted: model built"
        import contextlib

        err = io.StringIO()
        argv = ["train", "--model", "vae", "--tasks", "digits:classes=0-1", "--epochs", "1"]
        argv += ["--out", str(dest / "run"), "--device", "cpu", "--set", "hidden=100000000"]
        with contextlib.redirect_stderr(err):
            code = main(argv)
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        return f"exit {code}: {lines[-1] if lines else ''}"

    peak, stop = [0], threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _disk(dest))
            time.sleep(0.002)

    before = _disk(dest)
    Path("/proc/self/clear_refs").write_text("5")
    base, w0 = _status()["VmRSS"], _wchar()
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = call()
    except MemoryError:
        result = "MemoryError (hit the bench's 4 GB safety limit)"
    except Exception as exc:  # the refusal: its one line
        result = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    after = _disk(dest)
    return {
        "rss": max(0, _status()["VmHWM"] - base),
        "written": _wchar() - w0,
        "disk_before": before,
        "disk_peak": max(peak[0], after),
        "disk_after": after,
        "seconds": seconds,
        "result": result,
    }


def _size(path: Path) -> int:
    return _disk(path) if path.is_dir() else path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1000, help="what each bomb unpacks to")
    ap.add_argument("--only", default=",".join(KINDS), help="comma-separated bomb letters")
    ap.add_argument("--quick", action="store_true", help="64 MB bombs (the smoke test)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, Path(args.work))))
        return 0
    size = (64 if args.quick else args.size_mb) * MB
    kinds = [k for k in args.only.split(",") if k in KINDS]
    with open("/proc/loadavg") as fh:
        print(f"load average: {fh.read().split()[0]}; bombs of {size // MB} MB")
    with tempfile.TemporaryDirectory(prefix="bombs-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        inputs = make_bombs(work, size)
        print(f"built in {time.perf_counter() - t0:.1f} s")
        head = f"{'bomb':38s} {'input MB':>9s} {'RSS +MB':>8s} {'disk peak':>10s}"
        print(f"{head} {'after':>6s} {'written':>10s} {'time s':>7s}  message")
        for kind in kinds:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--work", tmp],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=600,
            )
            label = f"({kind}) {KINDS[kind]}"
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{label:38s} child failed (exit {proc.returncode}): {tail}")
                continue
            r = json.loads(lines[-1])
            source = inputs.get(kind) or work / f"dest-{kind}"
            print(
                f"{label:38s} {_size(source) / MB:9.2f} {r['rss'] / MB:8.1f}"
                f" {r['disk_peak']:>10,} {r['disk_after']:>6,} {r['written']:>10,}"
                f" {r['seconds']:7.2f}  {r['result']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
