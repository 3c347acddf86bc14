"""A real `crowdseg up` process for tests: the embedded profile with its real Kafka-protocol broker."""

from __future__ import annotations

import ctypes
import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CROWDSEG = Path(sys.executable).parent / "crowdseg"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """A test run that dies (or a fixture that fails before its teardown) leaves no server behind."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], Any], timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


class EmbeddedServer:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self, timeout: float = 60.0) -> EmbeddedServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "CROWDSEG_OUTBOX_POLL_SECONDS": "0.2"}
        self.process = subprocess.Popen(
            [str(CROWDSEG), "up", "--data", str(self.data_dir), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, preexec_fn=_die_with_parent,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"crowdseg up exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"crowdseg up was not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Api:
    """A signed-in API client."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60)

    @classmethod
    def sign_up(cls, url: str, email: str, name: str = "User", password: str = "correct-horse-battery") -> Api:
        anonymous = httpx.Client(base_url=f"{url}/api/v1", timeout=60)
        response = anonymous.post("/auth/signup", json={"email": email, "password": password, "name": name})
        assert response.status_code == 201, response.text
        login = anonymous.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        api = cls(url, login.json()["access_token"])
        api.user = response.json()
        return api

    @classmethod
    def login(cls, url: str, email: str, password: str = "correct-horse-battery") -> Api:
        response = httpx.post(f"{url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=60)
        assert response.status_code == 200, response.text
        api = cls(url, response.json()["access_token"])
        api.user = api.http.get("/me").json()
        return api

    user: dict[str, object]

    def __getattr__(self, name: str) -> object:
        return getattr(self.http, name)


def export_bundle(master: Api, task_id: str) -> zipfile.ZipFile:
    """Request an export of the task, wait until it is done (failing on a failed one), download it."""
    created = master.http.post(f"/tasks/{task_id}/exports")
    assert created.status_code == 202, created.text
    export_id = created.json()["id"]

    def done() -> bool:
        status = master.http.get(f"/exports/{export_id}").json()
        assert status["status"] != "failed", status
        return bool(status["status"] == "done")

    wait_for(done, 120, "the export")
    download = master.http.get(f"/exports/{export_id}/download")
    assert download.status_code == 200, download.text
    return zipfile.ZipFile(io.BytesIO(download.content))
