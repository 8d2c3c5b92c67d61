"""Live streaming latency, end to end: from a piece of text arriving from Triton's stream
to the websocket frame that carries it reaching a connected reviewer's page.

A generate run goes through `inference.tasks.execute` (what a huey worker thread of
`manage.py serve` calls) against the real tritonserver with the shipped model, while a
websocket client is connected to the run's live channel (`/ws/live/?run=N`) through the
ASGI application. Each piece is timed when the generate task receives it from the
server's gRPC stream (the server has already coalesced a step's tokens) and again when
the frame holding its last character arrives: the difference is the task's coalescing,
rendering, the channel layer and the consumer.

Baseline in the same run: the channel hop alone (`broadcasts.tokens` called directly,
to the frame), which every piece pays at least once.

    python bench/bench_live.py [--prompts 8] [--group 4] [--max-tokens 96] [--workers 2]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import fill  # noqa: E402

STREAM_SPAN = re.compile(r'<span id="stream-(\d+)-(\d+)" hx-swap-oob="beforeend">(.*?)</span>', re.S)


class Arrivals:
    """When each piece reached the generate task, by (group, completion index), as the
    running length of that completion's streamed text."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pieces: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
        self.length: dict[tuple[int, int], int] = defaultdict(int)
        self.current = threading.local()

    def instrument(self) -> None:
        """Wrap the task's coalescer and the group-start event (bench only)."""
        from inference import pipelines
        from labelling.live import broadcasts

        arrivals = self
        started = broadcasts.group_started

        def group_started(run_id, group, slots):
            arrivals.current.group = group.pk
            started(run_id, group, slots)

        class TimedThrottle(pipelines.Throttle):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.group = arrivals.current.group

            def add(self, index: int, piece: str) -> None:
                key = (self.group, index)
                with arrivals.lock:
                    arrivals.length[key] += len(piece)
                    arrivals.pieces[key].append((arrivals.length[key], time.perf_counter()))
                super().add(index, piece)

        broadcasts.group_started = group_started
        pipelines.broadcasts.group_started = group_started
        pipelines.Throttle = TimedThrottle


def frame_latencies(arrivals: Arrivals, frames: list[tuple[float, str]]) -> list[float]:
    """Match frames to pieces: a piece is delivered by the first frame that brings its
    completion's streamed text to the piece's running length."""
    delivered: dict[tuple[int, int], int] = defaultdict(int)
    latencies = []
    for received, text in frames:
        for group, index, escaped in STREAM_SPAN.findall(text):
            key = (int(group), int(index))
            delivered[key] += len(html.unescape(escaped))
            pending = arrivals.pieces[key]
            while pending and pending[0][0] <= delivered[key]:
                latencies.append((received - pending.pop(0)[1]) * 1000)
    lost = sum(len(v) for v in arrivals.pieces.values())
    if lost:
        raise SystemExit(f"{lost} streamed pieces never reached the websocket client")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generator-dir", help="model folder for qwen3 (default: the shipped tiny model)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    os.environ.update(
        DATA_DIR=str(data_dir),
        HUEY_NAME="bench-live",
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
        INFERENCE_BACKEND="triton",
        DEBUG="0",
        SECRET_KEY="bench-" + "x" * 50,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
    )
    for name in ("DATABASE_URL", "REDIS_URL"):  # in-process channel layer, as `make run` serves
        os.environ.pop(name, None)

    from inference.triton_server import TritonProcess, free_port

    extra = {"generator_dir": Path(args.generator_dir).resolve()} if args.generator_dir else {}
    server = TritonProcess(data_dir / "triton", grpc_port=free_port(), metrics_port=free_port(), **extra).start()
    os.environ["TRITON_URL"] = server.url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        full, hop, run = measure(args)
    finally:
        server.stop()

    print(
        f"\nLive streaming: {args.prompts} groups x G={args.group}, max_tokens={args.max_tokens}, "
        f"{args.workers} workers, {'tiny shipped' if not args.generator_dir else args.generator_dir} model "
        f"on the bundled CPU tritonserver; run #{run.pk} {run.status}\n"
    )
    print(f"| {'path':<56} | {'pieces':>6} | {'p50 ms':>7} | {'p95 ms':>7} | {'max ms':>7} |")
    print(f"|{'-' * 58}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for name, values in (
        ("channel hop alone: broadcasts.tokens -> frame (baseline)", hop),
        ("end to end: piece from Triton -> frame", full),
    ):
        print(
            f"| {name:<56} | {len(values):>6} | {statistics.median(values):>7.1f} | {fill.pct(values, 95):>7.1f} | "
            f"{max(values):>7.1f} |"
        )
    print(
        f"\np95 end to end / channel hop: {fill.pct(full, 95) / fill.pct(hop, 95):.1f}x (aim: end to end under 100 ms)"
    )


def measure(args):
    from asgiref.sync import async_to_sync
    from bench_pipeline import setup_rows
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections
    from django.test import Client

    from inference import tasks
    from labelling.access.roles import ADMIN, ensure_roles
    from labelling.live import broadcasts
    from labelling.models import PipelineRun
    from labelling.runs import services as run_services
    from shaping_web.asgi import application

    character, prompt_set, rubric = setup_rows(args.prompts)
    run, _ = run_services.run_start(
        kind="generate",
        character=character,
        prompt_set=prompt_set,
        rubric=rubric,
        group_size=args.group,
        enqueue=False,
        params={"sampling": {"max_tokens": args.max_tokens}, "workers": args.workers},
    )
    user = get_user_model().objects.create_user(username="live")
    user.groups.add(ensure_roles()[ADMIN])  # a run's stream is for admins, as its page is
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
    arrivals = Arrivals()
    arrivals.instrument()

    end = "<!-- end of bench -->"

    async def receive_all(communicator) -> list[tuple[float, str]]:
        """Frames until the producer's end marker (a timeout would cancel the consumer)."""
        frames = []
        while True:
            text = await communicator.receive_from(timeout=600)
            if text == end:
                return frames
            frames.append((time.perf_counter(), text))

    async def go():
        communicator = WebsocketCommunicator(application, f"/ws/live/?run={run.pk}", headers=headers)
        assert (await communicator.connect())[0], "the websocket was refused"
        # The channel hop alone: pieces published straight from a worker thread.
        sent: dict[int, float] = {}

        def hop_producer():
            for i in range(200):
                sent[i] = time.perf_counter()
                broadcasts.tokens(run.pk, 0, {0: f"<{i}>"})
                time.sleep(0.005)
            broadcasts.push_html(broadcasts.run_group(run.pk), end)

        threading.Thread(target=hop_producer).start()
        hop = []
        for received, text in await receive_all(communicator):
            for _, _, escaped in STREAM_SPAN.findall(text):
                i = int(html.unescape(escaped)[1:-1])
                hop.append((received - sent[i]) * 1000)

        # The run, as a huey worker thread of `manage.py serve` executes it.
        def worker():
            try:
                tasks.execute(run.pk)
            finally:
                close_old_connections()
                broadcasts.push_html(broadcasts.run_group(run.pk), end)

        threading.Thread(target=worker).start()
        frames = await receive_all(communicator)
        await communicator.disconnect()
        return frame_latencies(arrivals, frames), hop

    full, hop = async_to_sync(go)()
    return full, hop, PipelineRun.objects.get(pk=run.pk)


if __name__ == "__main__":
    main()
