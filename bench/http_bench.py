"""HTTP load benchmark of the web app: N concurrent clients on loopback for T seconds.

    python bench/http_bench.py --url http://127.0.0.1:5000 --clients 8 --seconds 10   # against a running server
    python bench/http_bench.py --serve --sweep 1,8,32                                 # start gunicorn, sweep, stop
    python bench/http_bench.py --serve --mode photo --clients 8                       # 640x480 photos with a face
    python bench/http_bench.py --serve --mode video --frames 8                        # a short MP4, 8 frames judged
    python bench/http_bench.py --serve --soak --mode mix --clients 32 --seconds 60    # soak: errors and worker RSS
    make bench-http                                                                    # the same, via make

Each client is a thread with its own keep-alive connection (http.client), posting back to back to
/api/v1/predict; a request counts as an error unless it answers 200 with results. The first --warmup
seconds (1 s; 5 s in the face modes, 15 s with --soak) are not counted. What is posted (--mode):
``image``, the same image every time (a faces-mini face, 256x256); ``photo``, a 640x480 JPEG with one
face in it; ``video``, a 2 s 480x360 MP4 of a face moving, judged on --frames frames; ``mix``, four
photos then one video, each client starting at a different point of that cycle. photo, video and mix
ask for ?faces=on (--faces), so the face stage runs whatever the model records. Prints requests/s,
p50 and p99 latency and the error count per client count (for mix, also per kind), and the client's
own CPU time per request: client and server share the machine's cores, so that is load the server did
not get. --ceiling measures what the client alone can do, against a server that answers every request
with a fixed reply.

--soak (with --serve) runs one client count for --seconds after a --warmup (default 15 s) of the same
load, and reads the resident memory (VmRSS) of every gunicorn worker right after the warm-up, every
--sample-every seconds and at the end: it passes with no error and each worker's RSS at the end within
--rss-tolerance of its level after warm-up.

Standard library only for the image mode, except that generating the default image (when faces-mini
is absent) uses OpenCV; photo, video and mix use OpenCV and numpy, and video uses deepfake.video.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES_MINI = ROOT.parent / "shared" / "datasets" / "faces-mini"
BOUNDARY = "http-bench-boundary"

# The target of issue 5 on the project's 2-core machine, client included.
TARGET_RPS, TARGET_P99_MS, TARGET_CLIENTS = 300, 100.0, 8
MODES = ("image", "photo", "video", "mix")
PHOTOS_PER_VIDEO = 4  # mix: each client posts this many photos, then the video, and again
PHOTO_SHAPE, PHOTO_FACE = (480, 640), 400  # (h, w) of the photo and the side of the face in it
VIDEO_SHAPE, VIDEO_FACE, VIDEO_SECONDS, VIDEO_FPS = (360, 480), 200, 2.0, 10.0


def default_image() -> tuple[bytes, str]:
    faces = sorted((FACES_MINI / "Fake").glob("*.jpg"))
    if faces:
        return faces[0].read_bytes(), faces[0].name
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32) / 256
    image = np.stack([yy, xx, (yy + xx) / 2], -1) * 200 + rng.normal(0, 20, (256, 256, 3))
    ok, buf = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8))
    return buf.tobytes(), "generated-256.jpg"


def source_face():
    """(RGB face, its name): the first faces-mini fake (a 256x256 face crop), or a drawn face when it is absent."""
    import cv2

    faces = sorted((FACES_MINI / "Fake").glob("*.jpg"))
    if faces:
        bgr = cv2.imread(str(faces[0]), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"faces-mini Fake/{faces[0].name}"
    from deepfake.faces.drawing import draw_face

    return draw_face(256), "a drawn face (faces-mini absent)"


def scene(face, shape: tuple[int, int], side: int, x: int, y: int, background=None):
    """``face`` scaled to ``side`` pixels, pasted at (x, y) into a blurred ``shape`` (h, w) copy of itself."""
    import cv2

    if background is None:
        background = blurred_background(face, shape)
    image = background.copy()
    image[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return image


def blurred_background(face, shape: tuple[int, int]):
    import cv2

    return cv2.GaussianBlur(cv2.resize(face, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR), (0, 0), 12)


def photo_jpeg(quality: int = 90) -> tuple[bytes, str]:
    """The issue's photo: a 640x480 JPEG (quality 90) with one face of about 400 px, and a description.

    infer_bench.py times Predictor.predict on this same JPEG."""
    import cv2

    face, source = source_face()
    (h, w), side = PHOTO_SHAPE, PHOTO_FACE
    rgb = scene(face, PHOTO_SHAPE, side, (w - side) // 2, (h - side) // 2)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes(), f"{w}x{h} JPEG q{quality}, one {side} px face from {source}"


def video_mp4() -> tuple[bytes, str]:
    """A short MP4 (deepfake.video.write_video): a face of 200 px moving across a 480x360 frame, and a description."""
    sys.path.insert(0, str(ROOT))
    from deepfake.video import write_video

    face, source = source_face()
    (h, w), side = VIDEO_SHAPE, VIDEO_FACE
    background = blurred_background(face, VIDEO_SHAPE)
    n = round(VIDEO_SECONDS * VIDEO_FPS)
    frames = []
    for i in range(n):
        t = i / max(1, n - 1)
        x = round(10 + t * (w - side - 20))
        y = round((h - side) / 2 + 30 * (t - 0.5))
        frames.append(scene(face, VIDEO_SHAPE, side, x, y, background))
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        data = write_video(Path(tmp) / "clip.mp4", frames, VIDEO_FPS).read_bytes()
    return data, f"{w}x{h} MP4 (mp4v), {VIDEO_SECONDS:g} s at {VIDEO_FPS:g} fps, a {side} px face moving, {source}"


def multipart(content: bytes, name: str) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def query(faces: str | None, frames: int | None = None) -> str:
    params = {k: v for k, v in (("faces", faces), ("frames", frames)) if v is not None}
    return "?" + urllib.parse.urlencode(params) if params else ""


def workload(args: argparse.Namespace) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """The cycle of requests each client posts, as (kind, query, multipart body), and lines describing it."""
    faces = args.faces
    if args.mode == "image":
        content, name = (args.image.read_bytes(), args.image.name) if args.image else default_image()
        lines = [f"image: {name}, {len(content) / 1024:.0f} KB{'; ?faces=' + faces if faces else ''}"]
        return [("image", query(faces), multipart(content, name))], lines
    cycle, lines = [], []
    if args.mode in ("photo", "mix"):
        content, what = (args.image.read_bytes(), args.image.name) if args.image else photo_jpeg()
        photo = ("photo", query(faces), multipart(content, args.image.name if args.image else "photo-640x480.jpg"))
        cycle += [photo] * (PHOTOS_PER_VIDEO if args.mode == "mix" else 1)
        lines.append(f"photo: {what}, {len(content) / 1024:.0f} KB, posted with {photo[1] or 'no query'}")
    if args.mode in ("video", "mix"):
        content, what = video_mp4()
        video = ("video", query(faces, args.frames), multipart(content, "clip-480x360.mp4"))
        cycle.append(video)
        lines.append(f"video: {what}, {len(content) / 1024:.0f} KB, posted with {video[1]}")
    if args.mode == "mix":
        lines.append(f"mix: each client posts {PHOTOS_PER_VIDEO} photos then the video, each from its own start")
    return cycle, lines


def client(url: str, cycle: list, offset: int, start: float, warm_until: float, stop: float, out: list) -> None:
    """One client: post ``cycle`` (from ``offset``) back to back until ``stop``; record (latency s, ok, kind) of
    requests started after warm-up."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/api/v1/predict"
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Connection": "keep-alive"}
    conn = None
    requests = itertools.islice(itertools.cycle(cycle), offset % len(cycle), None)
    while time.perf_counter() < start:
        time.sleep(0.001)
    for kind, params, body in requests:
        t0 = time.perf_counter()
        if t0 >= stop:
            break
        ok = False
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
            conn.request("POST", path + params, body, headers)
            response = conn.getresponse()
            data = response.read()
            ok = response.status == 200 and b'"results"' in data
            if response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        if t0 >= warm_until:
            out.append((time.perf_counter() - t0, ok, kind))
    if conn is not None:
        conn.close()


def run_clients(url: str, cycle: list, clients: int, first: int, start: float, warmup: float, seconds: float) -> dict:
    """``clients`` threads in this process (client numbers from ``first``); their records and CPU seconds."""
    records: list[list] = [[] for _ in range(clients)]
    warm_until, stop = start + warmup, start + warmup + seconds
    cpu = time.process_time()
    threads = [
        threading.Thread(target=client, args=(url, cycle, first + i, start, warm_until, stop, records[i]), daemon=True)
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"records": [r for rs in records for r in rs], "cpu_s": time.process_time() - cpu}


def summary(records: list, seconds: float) -> dict:
    latencies = sorted(lat for lat, ok, _ in records if ok)
    done = len(latencies)
    return {
        "requests_per_s": done / seconds,
        "p50_ms": 1e3 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1e3 * latencies[min(done - 1, int(0.99 * done))] if latencies else float("nan"),
        "requests": done,
        "errors": sum(1 for _, ok, _ in records if not ok),
    }


def measure(url: str, cycle: list, clients: int, seconds: float, warmup: float, processes: int, at_wall=None) -> dict:
    """Load from ``clients`` clients; ``at_wall(begin, warm, stop)``, if given, runs in a thread beside them
    with the wall-clock times (time.time()) the clients start, end their warm-up and stop."""
    # Perf-counter clocks are per-process on some systems, so each process gets an offset from now, not a time.
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    firsts = [sum(shares[:i]) for i in range(processes)]
    delay = 0.05 if processes == 1 else 2.0  # time for a pool to start before the clients do
    begin = time.time() + delay
    watcher = None
    if at_wall is not None:
        watcher = threading.Thread(target=at_wall, args=(begin, begin + warmup, begin + warmup + seconds), daemon=True)
        watcher.start()
    if processes == 1:
        parts = [run_clients(url, cycle, clients, 0, time.perf_counter() + delay, warmup, seconds)]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes) as pool:
            jobs = [(url, cycle, n, first, begin, warmup, seconds) for n, first in zip(shares, firsts, strict=True)]
            parts = pool.map(_process_entry_at, jobs)
    if watcher is not None:
        watcher.join()
    records = [r for p in parts for r in p["records"]]
    row = {"clients": clients, **summary(records, seconds)}
    row["client_cpu_ms_per_request"] = 1e3 * sum(p["cpu_s"] for p in parts) / max(1, len(records))
    kinds = sorted({kind for _, _, kind in records})
    if len(kinds) > 1:
        row["by_kind"] = {kind: summary([r for r in records if r[2] == kind], seconds) for kind in kinds}
    return row


def _process_entry_at(args) -> dict:
    url, cycle, n, first, begin_wall, warmup, seconds = args
    start = time.perf_counter() + max(0.0, begin_wall - time.time())
    return run_clients(url, cycle, n, first, start, warmup, seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"error: the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"error: {url}/readyz answered {exc.code}: {exc.read().decode()[:200]}") from None
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"error: no answer from {url}/readyz within {timeout:.0f} s")


def start_server(workers: int, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    """gunicorn as make serve starts it, on a free loopback port; its log (one line per request) goes to ``log``.

    deepfake-serve replaces itself with gunicorn, so the Popen's pid is gunicorn's master."""
    port = free_port()
    serve = [str(Path(sys.executable).with_name("deepfake-serve")), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*serve, "--workers", str(workers), "--threads", str(threads)], cwd=ROOT, stdout=out, stderr=out
        )
    return process, f"http://127.0.0.1:{port}"


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (gunicorn's workers, for its master), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.update(int(c) for c in task.read_text().split())
        except OSError:
            pass
    if found:
        return sorted(found)
    for status in Path("/proc").glob("[0-9]*/status"):  # kernels without the children file
        try:
            ppid = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if int(ppid) == pid:
            found.add(int(status.parent.name))
    return sorted(found)


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker_rss(master: int) -> dict[int, float]:
    return {pid: mb for pid in children(master) if (mb := rss_mb(pid)) is not None}


class RssSampler:
    """Samples the RSS of every gunicorn worker at the end of the warm-up, every ``every`` seconds, and at the end."""

    def __init__(self, master: int, every: float):
        self.master, self.every = master, every
        self.samples: list[tuple[float, dict[int, float]]] = []  # (seconds after warm-up, {pid: MiB})
        self.before_load: dict[int, float] = {}

    def __call__(self, begin: float, warm: float, stop: float) -> None:
        self.before_load = worker_rss(self.master)
        t = warm
        while t < stop + 0.5 * self.every:
            time.sleep(max(0.0, min(t, stop - 0.2) - time.time()))  # the last sample just before the clients stop
            self.samples.append((time.time() - warm, worker_rss(self.master)))
            t += self.every


def soak_report(sampler: RssSampler, row: dict, tolerance: float) -> bool:
    """Prints the workers' RSS after warm-up and at the end; True when no error and no worker grew past tolerance."""
    (_, warm), (t_end, end) = sampler.samples[0], sampler.samples[-1]
    print(f"# worker RSS (VmRSS, MiB): before the load, after warm-up, at the end of the {t_end:.0f} s soak")
    print(f"{'worker pid':>10} {'start':>8} {'warm':>8} {'end':>8} {'peak':>8} {'change':>8}")
    grown = []
    for pid in sorted(set(warm) | set(end)):
        if pid not in warm or pid not in end:
            print(f"{pid:>10} {'restarted: present ' + ('after warm-up only' if pid in warm else 'at the end only')}")
            grown.append(pid)
            continue
        peak = max(s.get(pid, 0.0) for _, s in sampler.samples)
        change = end[pid] / warm[pid] - 1
        start = sampler.before_load.get(pid)
        print(
            f"{pid:>10} {start if start is not None else float('nan'):>8.1f} {warm[pid]:>8.1f} {end[pid]:>8.1f} "
            f"{peak:>8.1f} {change:>+8.1%}"
        )
        if change > tolerance:
            grown.append(pid)
    timeline = "  ".join(f"{t:.0f}s {sum(s.values()):.0f}" for t, s in sampler.samples)
    print(f"# all workers' RSS over the soak (s after warm-up, MiB): {timeline}")
    ok = row["errors"] == 0 and not grown
    print(
        f"# soak at {row['clients']} clients, {t_end:.0f} s after warm-up: {row['errors']} errors; worker RSS "
        f"{'within' if not grown else 'NOT within'} {tolerance:.0%} of its level after warm-up: "
        f"{'PASSED' if ok else 'FAILED'}"
    )
    return ok


def fixed_reply_server(port: int, ready) -> None:
    """A server that answers every request at once with a fixed JSON reply: the client's own ceiling."""
    reply = b'{"results": []}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(reply)

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                header, buf = buf.split(b"\r\n\r\n", 1)
                length = next(
                    int(line.split(b":")[1])
                    for line in header.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                conn.sendall(head + reply)

    with socket.create_server(("127.0.0.1", port)) as server:
        ready.set()
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def check_once(url: str, cycle: list) -> list[str]:
    """Post each kind of the workload once and describe the answer, so a run shows what the server made of it."""
    lines = []
    for kind, params, body in {kind: (kind, params, body) for kind, params, body in cycle}.values():
        request = urllib.request.Request(
            url + "/api/v1/predict" + params,
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                result = json.load(response)["results"][0]
        except urllib.error.HTTPError as exc:
            lines.append(f"{kind}: answered {exc.code}: {exc.read().decode()[:200]}")
            continue
        except (OSError, ValueError, KeyError, IndexError) as exc:
            lines.append(f"{kind}: no usable answer: {exc}")
            continue
        frames = result.get("frames") or []
        with_face = sum(1 for f in frames if f.get("faces"))
        lines.append(
            f"{kind}: answered kind={result.get('kind')} label={result.get('label')} p_fake={result.get('p_fake')} "
            f"face_found={result.get('face_found')} faces={len(result.get('faces') or [])}"
            + (f" frames={len(frames)} (with a face: {with_face})" if frames else "")
            + f" server latency {result.get('latency_ms')} ms"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Figures go to stdout, one row per client count."
    )
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="a running server (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: %(default)s)")
    parser.add_argument(
        "--sweep", default=None, help="several client counts in one run, e.g. 1,8,32 (overrides --clients)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per client count (default: 10)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds run first and not counted (default: 1 for image; 5 for photo, video and mix, whose first "
        "requests in each server thread wait about a second for its face detector to be built; 15 with --soak)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="image",
        help="what the clients post: image (256x256 face crop), photo (640x480 JPEG with a face), "
        "video (2 s MP4), mix (4 photos, 1 video) (default: %(default)s)",
    )
    parser.add_argument(
        "--faces",
        choices=("auto", "on", "off"),
        default=None,
        help="?faces= sent with each request (default: on for photo, video and mix; none for image)",
    )
    parser.add_argument("--frames", type=int, default=8, help="?frames= sent with each video (default: %(default)s)")
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        help="image to post in the image, photo and mix modes (default: a faces-mini fake, 256x256 JPEG, "
        "or the generated 640x480 photo)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="client processes the clients are spread over (default: 1)"
    )
    parser.add_argument(
        "--serve", action="store_true", help="start gunicorn (as make serve does) on a free port, stop it after"
    )
    parser.add_argument("--workers", type=int, default=2, help="with --serve: gunicorn workers (default: 2)")
    parser.add_argument("--threads", type=int, default=4, help="with --serve: threads per worker (default: 4)")
    parser.add_argument(
        "--soak",
        action="store_true",
        help="with --serve: one client count, and the RSS of every worker after warm-up and at the end",
    )
    parser.add_argument(
        "--sample-every", type=float, default=5.0, help="with --soak: seconds between RSS samples (default: 5)"
    )
    parser.add_argument(
        "--rss-tolerance",
        type=float,
        default=0.10,
        help="with --soak: growth of a worker's RSS over the soak that still passes (default: 0.10)",
    )
    parser.add_argument(
        "--ceiling", action="store_true", help="measure the client against a fixed-reply server instead"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per client count instead of a table")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(c) for c in args.sweep.split(",")] if args.sweep else [args.clients]
    except ValueError:
        parser.error(f"--sweep {args.sweep!r}: give client counts separated by commas, e.g. 1,8,32")
    if args.warmup is None:
        args.warmup = 15.0 if args.soak else 1.0 if args.mode == "image" else 5.0
    if min(args.counts) < 1 or args.seconds <= 0 or args.warmup < 0 or args.processes < 1:
        parser.error("client counts, --seconds and --processes must be positive, --warmup not negative")
    if not 1 <= args.frames <= 128:
        parser.error(f"--frames {args.frames} must be from 1 to 128 (the server's limit)")
    if args.image is not None and not args.image.is_file():
        parser.error(f"--image {args.image}: no such file")
    if args.image is not None and args.mode == "video":
        parser.error("--image is not used by --mode video")
    if args.faces is None and args.mode != "image":
        args.faces = "on"
    if args.soak:
        if not args.serve or args.ceiling:
            parser.error("--soak needs --serve: it reads the memory of the workers of the server it starts")
        if len(args.counts) > 1:
            parser.error("--soak runs one client count: give --clients, not --sweep")
        if args.sample_every <= 0 or args.rss_tolerance < 0:
            parser.error("--sample-every must be positive, --rss-tolerance not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cycle, described = workload(args)
    process = None
    url = args.url.rstrip("/")
    if args.ceiling:
        port = free_port()
        ready = multiprocessing.get_context("spawn").Event()
        process = multiprocessing.get_context("spawn").Process(
            target=fixed_reply_server, args=(port, ready), daemon=True
        )
        process.start()
        ready.wait(30)
        url, server = f"http://127.0.0.1:{port}", "fixed-reply server (client ceiling)"
    elif args.serve:
        log = Path(tempfile.gettempdir()) / "http_bench_gunicorn.log"
        process, url = start_server(args.workers, args.threads, log)
        wait_ready(url, process)
        server = (
            f"gunicorn gthread, {args.workers} workers x {args.threads} threads, {url}, master pid {process.pid}; "
            f"its log: {log}"
        )
    else:
        ready = wait_ready(url)
        server = f"{url} (model {ready.get('model')})"
    try:
        print(f"# server: {server}", flush=True)
        for line in described:
            print(f"# {line}", flush=True)
        if not args.ceiling:
            for line in check_once(url, cycle):
                print(f"# check, one request: {line}", flush=True)
        print(
            f"# mode {args.mode}: {args.seconds:g} s per count after {args.warmup:g} s warm-up; "
            f"{os.cpu_count()} CPUs; load average before: {load_average()}",
            flush=True,
        )
        sampler = RssSampler(process.pid, args.sample_every) if args.soak else None
        rows = []
        if not args.json:
            print(f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'client CPU ms/req':>18}")
        for count in args.counts:
            row = measure(url, cycle, count, args.seconds, args.warmup, args.processes, sampler)
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            print(
                f"{count:>7} {row['requests_per_s']:>8.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
                f"{row['errors']:>7} {row['client_cpu_ms_per_request']:>18.2f}",
                flush=True,
            )
            for kind, r in row.get("by_kind", {}).items():
                print(
                    f"{kind:>7} {r['requests_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7}",
                    flush=True,
                )
        print(f"# load average after: {load_average()}")
        at_target = [r for r in rows if r["clients"] == TARGET_CLIENTS]
        if at_target and not args.ceiling and args.mode == "image":
            r = at_target[0]
            met = r["requests_per_s"] >= TARGET_RPS and r["p99_ms"] <= TARGET_P99_MS and r["errors"] == 0
            print(
                f"# target at {TARGET_CLIENTS} clients: >= {TARGET_RPS} req/s with p99 <= {TARGET_P99_MS:g} ms: "
                f"{'met' if met else 'NOT met'}"
            )
        if sampler is not None:
            return 0 if soak_report(sampler, rows[0], args.rss_tolerance) else 1
        return 1 if any(r["errors"] for r in rows) else 0
    finally:
        if process is not None:
            process.terminate()
            (process.wait if isinstance(process, subprocess.Popen) else process.join)(30)


if __name__ == "__main__":
    sys.exit(main())
