"""Where the app's work is fastest: one image's decode (a slider step) and batch work (a map's
encoding, a grid's decode) on the CPU and on CUDA, side by side (issue 18 part 4; nothing is
asserted). Without a CUDA device the CUDA column is skipped with a line.

    python bench/bench_device.py [--run pretrained/lmvae-digits-glyphs-shapes] [--repeats 50]

(a) single-image decode: the traversal's traced decoder on the CPU (one torch thread, what a
    slider's server fallback runs) against an eager decode on CUDA including the copy of its
    pixels back to the host (what the page would need); median and p95 in ms.
(b) batch work: encoding --points test images in batches of 512 (the latent map's codes) and
    decoding a traversal's grid (every variable of the expert over 9 values, one batch),
    median of --repeats / 10 runs each.
The app's choice (lifelong.explore.device): batch work on CUDA when there is one, a slider's
single image on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int, sync=None) -> list[float]:
    fn()  # warm-up (tracing, CUDA context, cuDNN's choice)
    if sync:
        sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
    return f"{statistics.median(samples) * 1e3:8.2f} ms (p95 {p95 * 1e3:.2f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "pretrained" / "lmvae-digits-glyphs-shapes"))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--points", type=int, default=4096)
    args = ap.parse_args(argv)
    import torch

    from lifelong import data as ldata
    from lifelong import runs
    from lifelong.embedding import encode
    from lifelong.explore import traversal

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    run = runs.open_run(args.run)
    cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    name = torch.cuda.get_device_name() if cuda else "none"
    print(f"torch {torch.__version__}; run {run.name}; CUDA device: {name}")
    x = ldata.load_task(run.tasks[0], "test", run.manifest.get("seed", 0)).x
    x = x.repeat(-(-args.points // len(x)), 1, 1, 1)[: args.points]
    models = {d: run.load_model(device=d) for d in devices}
    cpu = models["cpu"]
    start = traversal.start_from_image(cpu, x[:1])
    codes = traversal.panel_codes(cpu, start)

    print("\n(a) single-image decode (a slider step)")
    live = traversal.live_decoder(cpu, codes, start.expert)
    print(f"  cpu, traced, 1 thread        {ms(timed(lambda: live(codes), args.repeats))}")
    if cuda:
        gpu = models["cuda"]

        def one():
            return traversal.decode(gpu, codes, start.expert).cpu()

        print(
            f"  cuda, eager + copy back      {ms(timed(one, args.repeats, torch.cuda.synchronize))}"
        )
    else:
        print("  cuda: skipped, no CUDA device here")

    print(f"\n(b) batch work: encode {len(x)} images (map codes), decode a sweep of every variable")
    for dev in devices:
        model = models[dev]
        sync = torch.cuda.synchronize if dev == "cuda" else None
        start_d = traversal.Start(start.expert, codes, start.routed)
        reps = max(3, args.repeats // 10)
        enc = timed(lambda m=model: encode(m, x, "routed"), reps, sync)
        grid = timed(
            lambda m=model, s=start_d: traversal.sweep(m, s, [-3, -2, -1, 0, 1, 2, 3, 4, 5]),
            reps,
            sync,
        )
        print(f"  {dev:<5} encode {ms(enc)}   grid {ms(grid)}")
    if not cuda:
        print("  cuda: skipped, no CUDA device here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
