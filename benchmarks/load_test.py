"""Load test: N concurrent gradio_client clients call /predict for T minutes, same image or a new image each time.

    python benchmarks/load_test.py --clients 8 --minutes 10 --mode both [--model weights]

Starts its own `python app.py` on 127.0.0.1 (one fresh server per mode) and talks to nothing else.
Bounded: at most 64 clients and 60 minutes. Every answer's heatmap is opened and fully decoded, so
a truncated download counts as a failure. Prints per mode: requests, failures (with their
messages), throughput, latency p50/p95, and the server's RSS at start, after 200 requests and at
the end.
"""
from __future__ import annotations

import argparse
import collections
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import ROOT, percentile, photo, rss_mb, start_server, stop_server  # noqa: E402


def run_mode(mode: str, args, folder: Path) -> None:
    from gradio_client import Client, handle_file
    from PIL import Image

    base = np.asarray(photo(args.width, args.height))
    same = folder / "same.jpg"
    Image.fromarray(base).save(same, quality=90)
    server, url = start_server(args.model, folder / f"server-{mode}.log")
    lock = threading.Lock()
    latencies: list[float] = []
    failures: collections.Counter = collections.Counter()
    rss = {"start": None, "after 200": None, "end": None}
    done = 0
    try:
        Client(url, verbose=False).predict(handle_file(same), api_name="/predict")  # load the model
        rss["start"] = rss_mb(server.pid)
        deadline = time.monotonic() + args.minutes * 60

        def client_loop(index: int) -> None:
            nonlocal done
            client = Client(url, verbose=False)
            rng = np.random.default_rng(index)
            k = 0
            while time.monotonic() < deadline:
                if mode == "same":
                    path = same
                else:  # a new image every request: shifted content plus fresh noise, so no two files hash alike
                    image = np.roll(base, int(rng.integers(1, 200)), axis=1)
                    image = np.clip(image + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
                    path = folder / f"c{index}-{k % 4}.jpg"
                    Image.fromarray(image).save(path, quality=90)
                k += 1
                start = time.perf_counter()
                try:
                    _, overlay, _, report = client.predict(handle_file(path), api_name="/predict")
                    with Image.open(overlay) as heatmap:
                        heatmap.load()  # a truncated download fails here
                    ok, message = report is not None, ""
                except Exception as exc:  # every failure is counted and its message kept
                    ok, message = False, f"{type(exc).__name__}: {str(exc)[:120]}"
                elapsed = time.perf_counter() - start
                with lock:
                    done += 1
                    if ok:
                        latencies.append(elapsed)
                    else:
                        failures[message] += 1
                    if done == 200:
                        rss["after 200"] = rss_mb(server.pid)

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.minutes * 60 + 300)
        wall = time.monotonic() - started
        rss["end"] = rss_mb(server.pid)
    finally:
        stop_server(server)

    total = len(latencies) + sum(failures.values())
    print(f"[{mode}] {args.clients} clients x {args.minutes:g} min, {args.width}x{args.height}: {total} requests, "
          f"{sum(failures.values())} failed, {len(latencies) / wall:.2f} req/s, "
          f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms")
    fmt = lambda v: "n/a" if v is None else f"{v:.0f} MB"  # noqa: E731
    change = (rss["end"] / rss["start"] - 1) * 100 if rss["start"] else float("nan")
    print(f"[{mode}] server RSS: start {fmt(rss['start'])}, after 200 {fmt(rss['after 200'])}, end {fmt(rss['end'])} "
          f"({change:+.1f}% start->end)")
    for message, count in failures.most_common(5):
        print(f"[{mode}]   {count} x {message}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--mode", choices=("same", "distinct", "both"), default="both")
    parser.add_argument("--model", default=str(ROOT / "weights"))
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.minutes <= 60):
        parser.error("bounded: 1-64 clients, at most 60 minutes")
    folder = Path(tempfile.mkdtemp(prefix="load_test_"))
    for mode in ("same", "distinct") if args.mode == "both" else (args.mode,):
        run_mode(mode, args, folder)


if __name__ == "__main__":
    main()
