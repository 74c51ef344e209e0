"""Browser tests: the system's Chromium driven by Playwright, the app served on 127.0.0.1 in a thread.

Every page the tests open is guarded: a console error, a failed request or a request that leaves
127.0.0.1 fails the test. Screenshots go to `test-screenshots/` (pytest-playwright owns and empties `test-results/`).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str | None:
    env = os.environ.get("OPENCEM_CHROMIUM")
    if env and Path(env).exists():
        return env
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    exe = chromium_path()
    if exe is None:
        pytest.skip("browser tests need Chromium: apt-get install -y chromium (or set OPENCEM_CHROMIUM)")
    return {
        **browser_type_launch_args,
        "executable_path": exe,
        "headless": True,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}}


class Guard:
    """Collects what must not happen on a page: console errors, failed or off-host requests."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.external: list[str] = []
        self.failed: list[str] = []

    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"page error: {m}" for m in self.page_errors]
                + [f"request left 127.0.0.1: {u}" for u in self.external]
                + [f"request failed: {u}" for u in self.failed])


@pytest.fixture
def guarded_page(page) -> Iterator[tuple[object, Guard]]:
    guard = Guard()

    def on_route(route) -> None:
        url = route.request.url
        host = urlparse(url).hostname or ""
        if url.startswith(("data:", "blob:", "about:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            guard.external.append(url)
            route.abort()

    page.route("**/*", on_route)
    page.on("console", lambda msg: guard.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: guard.page_errors.append(str(exc)))
    page.on("requestfailed", lambda req: guard.failed.append(f"{req.url} ({req.failure})")
            if (urlparse(req.url).hostname or "") in LOCAL_HOSTS else None)
    yield page, guard
    assert not guard.problems(), "\n".join(guard.problems())


@pytest.fixture
def screenshot():
    """Save a full-page screenshot under test-screenshots/ (kept after the run for people to look at)."""

    def shoot(page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(sample_warehouse: Path) -> Iterator[str]:
    """The app on the sample warehouse, served on 127.0.0.1 by werkzeug in a thread."""
    from werkzeug.serving import make_server

    from app.main import create_app
    from etl.config import Settings

    app = create_app(Settings(warehouse_dir=sample_warehouse))
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
