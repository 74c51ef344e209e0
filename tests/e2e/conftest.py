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


def serve_in_thread(settings) -> tuple[str, object]:
    """An app on `settings`, served on 127.0.0.1 by werkzeug in a daemon thread: (its URL, the server)."""
    from werkzeug.serving import make_server

    from app.main import create_app

    app = create_app(settings)
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", server


@pytest.fixture(scope="session")
def live_server(sample_warehouse: Path) -> Iterator[str]:
    """The app on the sample warehouse in development mode (no login, every role), served on 127.0.0.1."""
    from etl.config import Settings

    url, server = serve_in_thread(Settings(warehouse_dir=sample_warehouse, dev_mode=True))
    yield url
    server.shutdown()


#: The users of `auth_server`: name -> (roles, password). Synthetic, for the tests only.
TEST_USERS = {
    "carla": (("care",), "carla-care-password"),
    "piet": (("planner",), "piet-planner-password"),
    "erin": (("executive",), "erin-executive-password"),
}


class AuthServer:
    """The app with login on: its URL, its users file, audit log, and a way to sign in a browser page."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.audit_log = folder / "audit.jsonl"

    def login(self, page, user: str, *, next_path: str | None = None) -> None:
        """Sign `page` in as `user` through the login form, and wait until the app has redirected."""
        from urllib.parse import quote

        page.wait_for_load_state("networkidle")
        page.goto(self.url + "/login" + (f"?next={quote(next_path)}" if next_path else ""))
        page.fill("#login-username", user)
        page.fill("#login-password", TEST_USERS[user][1])
        with page.expect_navigation():
            page.click("#login-submit")
        page.wait_for_load_state("networkidle")  # the landing page's callbacks done: leaving aborts none

    def audit(self) -> list[dict]:
        import json

        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def auth_server(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """The app on the sample warehouse with login on: users (TEST_USERS) in a temporary users file, the
    session key and the audit log beside it, served on 127.0.0.1."""
    from app.auth import User, hash_password, write_users
    from etl.config import Settings

    folder = tmp_path_factory.mktemp("auth")
    write_users(folder / "users.toml", {name: User(name=name, roles=roles, password_hash=hash_password(pw))
                                        for name, (roles, pw) in TEST_USERS.items()})
    settings = Settings(warehouse_dir=sample_warehouse, users_file=folder / "users.toml",
                        secret_key_file=folder / "secret_key", audit_log_file=folder / "audit.jsonl")
    url, server = serve_in_thread(settings)
    yield AuthServer(url, folder)
    server.shutdown()
