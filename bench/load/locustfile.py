"""Locust users for bench/load: annotators who ask ``next`` and submit one contour, over and over.

Run by bench/load/run.py (one headless Locust process per phase); alone it is

    .venv/bin/locust -f bench/load/locustfile.py --headless --host http://127.0.0.1:8000 -u 64 -r 64 -t 60s \
        --task-id TASK --tokens-file tokens.json --pace 0 --samples-out samples.json

``--pace`` is the seconds from the start of one ``next`` → submit cycle to the start of the next one
(as Locust's ``constant_pacing``); 0 means no pause at all. Paced users first wait a random fraction
of one cycle: Locust spawns users in bursts (``spawn_rate`` of them once a second), and the offered
load should arrive evenly, not 200 at once. Every request is recorded (its name, the wall-clock time
it finished, its latency and its status) and written to ``--samples-out`` when Locust quits, with
``measure_from`` (every user spawned, plus one cycle) and ``stopping_at``: run.py measures only the
window between them, in which every user is running.

Outcomes: a submission answered 201 is accepted; 409 (the image is full, or this user already
annotated it) is a refusal, counted but not an error; 5xx or a dropped connection is an error.
``next`` answering 204 (nothing left for this user right now) is counted and the user waits a second.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from itertools import count
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.env import Environment
from shapes import small_polygon

# Per request: (name, finished at in epoch seconds, latency in ms, HTTP status; 0 = no response).
SAMPLES: list[tuple[str, float, float, int]] = []
MARKS: dict[str, float] = {}
PACE: list[float] = [0.0]
_next_token = count()
_tokens: list[str] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--task-id", default="", help="the task the annotators work on")
    parser.add_argument("--tokens-file", default="", help="JSON list of bearer tokens, one per user")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds per next → submit cycle (0: no pause)")
    parser.add_argument("--samples-out", default="", help="where to write the recorded requests (JSON)")


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    assert options is not None
    if not (options.task_id and options.tokens_file and options.samples_out):
        raise SystemExit("bench/load/locustfile.py needs --task-id, --tokens-file and --samples-out")
    _tokens.extend(json.loads(Path(options.tokens_file).read_text()))
    PACE[0] = max(0.0, float(options.pace))


@events.request.add_listener
def _record(name: str, start_time: float, response_time: float, response: Any, **_: Any) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    SAMPLES.append((name, start_time + response_time / 1000, response_time, status))


@events.spawning_complete.add_listener
def _spawned(user_count: int, **_: Any) -> None:
    if "spawned_at" not in MARKS:
        MARKS["spawned_at"] = time.time()
        MARKS["measure_from"] = MARKS["spawned_at"] + PACE[0]


@events.test_stopping.add_listener
def _stopping(**_: Any) -> None:
    MARKS.setdefault("stopping_at", time.time())


@events.quitting.add_listener
def _write(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    assert options is not None
    Path(options.samples_out).write_text(json.dumps({"marks": MARKS, "requests": SAMPLES}))


class Annotator(FastHttpUser):
    network_timeout = 120.0
    connection_timeout = 120.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        assert options is not None
        index = next(_next_token)
        if index >= len(_tokens):
            raise RuntimeError(f"user {index + 1} has no token: --tokens-file holds {len(_tokens)}")
        self.client.auth_header = f"Bearer {_tokens[index]}"
        self.task_id: str = options.task_id
        self.pace = PACE[0]
        self.rng = random.Random(index)
        if self.pace > 0:
            gevent.sleep(self.rng.uniform(0, self.pace))
        self.cycle_started = time.perf_counter()

    def wait_time(self) -> float:
        return max(0.0, self.pace - (time.perf_counter() - self.cycle_started)) if self.pace > 0 else 0.0

    @task
    def annotate(self) -> None:
        self.cycle_started = time.perf_counter()
        with self.client.get(f"/api/v1/tasks/{self.task_id}/next", name="next", catch_response=True) as answer:
            if answer.status_code == 204:
                answer.success()
                gevent.sleep(1.0)
                return
            if answer.status_code != 200:
                answer.failure(f"next answered {answer.status_code}: {(answer.text or '')[:200]}")
                return
            image = answer.json()["image"]
            answer.success()
        started = time.time()
        body = {
            "id": str(uuid.uuid4()),
            "image_id": image["id"],
            "shapes": [{"type": "contour", "points": small_polygon(image["width"], image["height"], self.rng)}],
            "duration_ms": self.rng.randint(2_000, 60_000),
        }
        path = f"/api/v1/tasks/{self.task_id}/submissions"
        with self.client.post(path, json=body, name="submit", catch_response=True) as answer:
            if answer.status_code in (201, 409):
                answer.success()  # 409: the image is full or already annotated by this user, a refusal
            else:
                detail = (answer.text or "")[:200]
                answer.failure(f"submit answered {answer.status_code} after {time.time() - started:.1f} s: {detail}")
