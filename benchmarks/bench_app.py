"""Serving overhead: the app's round trip for one 512x384 image minus the model's own time, in one run.

    python benchmarks/bench_app.py [--model weights] [--requests 30]

Starts `python app.py` on 127.0.0.1 (its own free port), times sequential gradio_client calls of
/predict, and times the same work in this process: the model with Grad-CAM (``Detector.predict``),
the whole analysis (model + provenance, ``detector.analyze``) and the heatmap encodings (PNG, as the
app used to send, and the JPEG it sends now). Overhead = round-trip p50 - analysis p50.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import ROOT, percentile, photo, rss_mb, start_server, stop_server  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def http_steps(url: str, path: Path) -> list[float]:
    """The README's curl protocol, timed step by step: where the serving time goes."""
    import json

    import httpx

    marks = [time.perf_counter()]
    with httpx.Client(base_url=url, timeout=60) as http:
        with path.open("rb") as file:
            [server_path] = http.post("/gradio_api/upload", files={"files": (path.name, file)}).json()
        marks.append(time.perf_counter())
        body = {"data": [{"path": server_path, "meta": {"_type": "gradio.FileData"}}]}
        event_id = http.post("/gradio_api/call/predict", json=body).json()["event_id"]
        marks.append(time.perf_counter())
        stream = http.get(f"/gradio_api/call/predict/{event_id}").text
        marks.append(time.perf_counter())
        data = json.loads([line for line in stream.splitlines() if line.startswith("data: ")][-1][6:])
        http.get(data[1]["url"]).raise_for_status()
        marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "weights"))
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    from detector import Detector, analyze

    folder = Path(tempfile.mkdtemp(prefix="bench_app_"))
    path = folder / "photo.jpg"
    photo(512, 384).save(path, quality=90)

    detector = Detector.from_pretrained(args.model, device="cpu")
    n = max(5, args.requests)
    plain = timed(lambda: detector.predict(path, cam=False), n)
    cam = timed(lambda: detector.predict(path, cam=True), n)
    whole = timed(lambda: analyze(str(path), detector=detector, cam=True), n)
    overlay = detector.predict(path, cam=True).overlay()

    def encode(fmt, **kw):
        buffer = io.BytesIO()
        overlay.save(buffer, fmt, **kw)
        return buffer.getbuffer().nbytes

    png = timed(lambda: encode("PNG"), n)
    jpeg = timed(lambda: encode("JPEG", quality=85), n)
    webp = timed(lambda: encode("WEBP", quality=80), n)

    server, url = start_server(args.model, folder / "server.log")
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(path), api_name="/predict")  # loads the model
        trips = timed(lambda: client.predict(handle_file(path), api_name="/predict"), args.requests)
        steps = [http_steps(url, path) for _ in range(args.requests)]
        rss = rss_mb(server.pid)
    finally:
        stop_server(server)

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"model {detector.config.name}, image 512x384, {args.requests} sequential requests")
    print(f"model, no CAM           p50 {ms(plain):7.1f} ms")
    print(f"model + Grad-CAM        p50 {ms(cam):7.1f} ms   (CAM / plain = {ms(cam) / ms(plain):.2f}x)")
    print(f"analyze (+ provenance)  p50 {ms(whole):7.1f} ms")
    print(f"heatmap {overlay.size[0]}x{overlay.size[1]} PNG   {ms(png):7.1f} ms, {encode('PNG') / 1024:6.0f} KB")
    print(f"heatmap JPEG q85        {ms(jpeg):7.1f} ms, {encode('JPEG', quality=85) / 1024:6.0f} KB   (sent now)")
    print(f"heatmap WebP q80        {ms(webp):7.1f} ms, {encode('WEBP', quality=80) / 1024:6.0f} KB")
    print(f"round trip /predict     p50 {ms(trips):7.1f} ms, p95 {percentile(trips, 95) * 1000:7.1f} ms")
    names = ["upload", "queue call", "result stream (incl. model)", "heatmap download"]
    parts = ", ".join(f"{name} {statistics.median(s[i] for s in steps) * 1000:.1f}" for i, name in enumerate(names))
    print(f"plain HTTP, p50 per step (ms): {parts}; total {statistics.median(sum(s) for s in steps) * 1000:.1f}")
    print(f"overhead (p50 round trip - p50 analyze) = {ms(trips) - ms(whole):.1f} ms "
          f"(- p50 model+CAM: {ms(trips) - ms(cam):.1f} ms); server RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
