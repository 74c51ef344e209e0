"""Who may see what: users and roles, login sessions, the pages each role may open, personal-data masking,
and the audit log of opened customer records.

- Users live in a TOML file (`Settings.users_path`, default `WAREHOUSE/users.toml`) with their roles and a
  salted scrypt hash of their password; `opencem user add|list|remove` (`cli_user`) writes it. A plain
  password is never stored, and a file that holds one is refused.
- A login is a Flask session: a cookie signed with a key kept in `Settings.secret_key_path`, created with
  mode 0600 on first use. Every request re-reads the user's roles (a removed user, or one whose password
  changed, is signed out at once).
- Each page module declares `roles=` in its `dash.register_page`; the server refuses, for a role not
  listed, both the page's layout and every callback the page module defines (`/_dash-update-component`),
  whatever links the browser shows. A page that declares no roles is shown to nobody.
- Personal data (every contract column marked `pii`, plus the derived search keys) is shown only to the
  roles in `PERSONAL_DATA_ROLES`; `mask` is the one function every customer query result passes through,
  so pages, exports and callback results carry the same masked values.
- Every opening of a customer record (and every refusal, search and login) is appended to a JSON-lines
  audit log (`Settings.audit_log_path`): the app never writes the warehouse itself.
- Development mode (`Settings.dev_mode`) has no login: every visitor acts with `Settings.dev_roles` (all
  roles by default) and every page carries a banner saying so.
"""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import hashlib
import hmac
import inspect
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import polars as pl

from etl.config import Settings
from etl.contracts import SOURCES
from etl.errors import OpencemError, UsageError

log = logging.getLogger(__name__)

#: The roles of the app, in the order they are listed to people.
ROLES: tuple[str, ...] = ("executive", "planner", "care", "assurance", "marketing", "data_steward")
ROLE_LABELS: dict[str, str] = {
    "executive": "executive", "planner": "planner", "care": "care agent", "assurance": "assurance engineer",
    "marketing": "marketing", "data_steward": "data steward",
}
#: Roles that see names, MSISDNs, addresses and other personal data; the others see them masked.
PERSONAL_DATA_ROLES: frozenset[str] = frozenset({"care", "assurance"})
#: Page modules anyone may open, signed in or not (they show no data).
PUBLIC_PAGES: frozenset[str] = frozenset({"app.pages.login", "app.pages.not_found"})
#: What a masked personal value shows (the assurance page's contact list uses the same mark).
MASK = "(hidden)"
#: Columns that hold personal data wherever a query returns them: the contracts' `pii` columns and the
#: search keys derived from them.
PERSONAL_COLUMNS: frozenset[str] = frozenset(
    {c.name for s in SOURCES.values() for c in s.columns if c.pii}
    | {"msisdn_digits", "msisdns", "name_key", "customer_name"}
)

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 10
#: scrypt cost (RFC 7914): 2**14 x 8 x 128 bytes = 16 MiB and ~50 ms per check on a laptop.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
#: Failed logins of one user name within the window after which further attempts are refused for it.
MAX_FAILURES, FAILURE_WINDOW_S = 5, 15 * 60

#: Request paths that need no session: Dash's own assets and bundles, and the login endpoints.
OPEN_PREFIXES = ("/assets/", "/_dash-component-suites/", "/_favicon", "/_reload-hash", "/_alive")
LOGIN_PATH, LOGIN_POST, LOGOUT_POST = "/login", "/auth/login", "/auth/logout"
#: The module of Dash's page-routing callback (it renders layouts, which are guarded themselves).
ROUTER_MODULES = frozenset({"dash.dash", "dash._pages"})


class AuthError(OpencemError):
    """The users file or the session key cannot be used as they are (the message names the file and the fix)."""


# ------------------------------------------------------------------------------------------ passwords


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of `password`, encoded with its parameters: `scrypt$n$r$p$salt$hash` (base64)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=SCRYPT_LEN)
    salt_b64, hash_b64 = (base64.b64encode(b).decode("ascii") for b in (salt, digest))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt_b64}${hash_b64}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches an encoded hash (compared in constant time); a malformed hash never matches."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64, validate=True), base64.b64decode(hash_b64, validate=True)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 2**20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


#: Checked against when a user name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + base64.b64encode(bytes(32)).decode("ascii")


# ---------------------------------------------------------------------------------------------- users


@dataclass(frozen=True)
class User:
    """One user of the app: name, roles, and the encoded hash of their password."""

    name: str
    roles: tuple[str, ...]
    password_hash: str
    created_at: str = ""

    @property
    def fingerprint(self) -> str:
        """A short digest of the password hash, kept in the session: a new password ends older sessions."""
        return hashlib.sha256(self.password_hash.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a signed-in user's name and roles, or the development-mode visitor."""

    name: str
    roles: frozenset[str]
    is_dev: bool = False

    @property
    def sees_personal_data(self) -> bool:
        return bool(self.roles & PERSONAL_DATA_ROLES)

    @property
    def role_label(self) -> str:
        return ", ".join(ROLE_LABELS.get(r, r) for r in ROLES if r in self.roles)

    def may_open(self, page: Mapping[str, Any]) -> bool:
        """Whether the page's declared roles include one of this viewer's (public pages: always)."""
        return page_allows(page, self)


def normalise_roles(roles: Iterable[str], *, where: str) -> tuple[str, ...]:
    """Roles in ROLES order, `data-steward` spelt as `data_steward`; an unknown role raises UsageError."""
    out = set()
    for role in roles:
        r = role.strip().lower().replace("-", "_").replace(" ", "_")
        if r not in ROLES:
            raise UsageError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        out.add(r)
    return tuple(r for r in ROLES if r in out)


def check_user_name(name: str, *, where: str) -> str:
    if not USER_NAME.match(name or ""):
        raise UsageError(f"{where}: user name {name!r} is not valid; expected 1-64 letters, digits, '.', "
                         "'_', '@' or '-', starting with a letter or digit")
    return name


def read_users(path: Path) -> dict[str, User]:
    """The users of a users file (none when the file does not exist); a malformed file raises AuthError."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AuthError(f"users file {path} is not valid TOML: {e}") from None
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise AuthError(f"users file {path}: [users] must be a table of users")
    users = {}
    for name, entry in table.items():
        where = f"users file {path}, user {name!r}"
        if not isinstance(entry, dict):
            raise AuthError(f"{where}: expected a table with roles and password_hash")
        if "password" in entry:
            raise AuthError(f"{where} holds a plain `password`; expected only `password_hash`: remove the "
                            f"line and set the password with `opencem user add {name} --role ...`")
        try:
            check_user_name(name, where=where)
            roles = normalise_roles(entry.get("roles", []), where=where)
        except UsageError as e:
            raise AuthError(str(e)) from None
        pw = entry.get("password_hash")
        if not isinstance(pw, str) or not pw.startswith("scrypt$") or pw.count("$") != 5:
            raise AuthError(f"{where}: password_hash is missing or not an scrypt hash; expected "
                            "scrypt$n$r$p$salt$hash as written by `opencem user add`")
        if not roles:
            raise AuthError(f"{where}: no roles; expected one or more of {', '.join(ROLES)}")
        users[name] = User(name=name, roles=roles, password_hash=pw, created_at=str(entry.get("created_at", "")))
    return users


def write_users(path: Path, users: Mapping[str, User]) -> None:
    """Write the users file whole (a temporary file renamed into place), readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# opencem app users, written by `opencem user add|remove`: roles and salted scrypt password hashes.",
        "# A plain password is never stored here. Roles: " + ", ".join(ROLES) + ".",
    ]
    for name in sorted(users):
        u = users[name]
        lines += ["", f"[users.{json.dumps(name)}]",
                  f"roles = [{', '.join(json.dumps(r) for r in u.roles)}]",
                  f"password_hash = {json.dumps(u.password_hash)}",
                  f"created_at = {json.dumps(u.created_at)}"]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class UserStore:
    """The users file, re-read when it changes on disk (so `opencem user` takes effect without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}
        self._error: str | None = None

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp and (self._users or self._error or stamp is None):
                return
            try:
                self._users, self._error = read_users(self.path), None
            except AuthError as e:  # fail closed: nobody can sign in until the file is fixed
                log.error("%s", e)
                self._users, self._error = {}, str(e)
            self._stamp = stamp

    def users(self) -> dict[str, User]:
        self._refresh()
        return dict(self._users)

    @property
    def error(self) -> str | None:
        """Why the users file cannot be used (None when it is fine or absent)."""
        self._refresh()
        return self._error

    def get(self, name: str) -> User | None:
        self._refresh()
        return self._users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is theirs; None otherwise (in about the same time either way)."""
        user = self.get(name)
        ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
        return user if ok and user is not None else None


class LoginThrottle:
    """Refuses a user name after MAX_FAILURES failed logins within FAILURE_WINDOW_S (per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, name: str) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(name.lower())
            while q and now - q[0] > FAILURE_WINDOW_S:
                q.popleft()
            return bool(q) and len(q) >= MAX_FAILURES

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures.setdefault(name.lower(), deque(maxlen=MAX_FAILURES)).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name.lower(), None)


# ----------------------------------------------------------------------------------------- secret key


def load_secret_key(path: Path) -> bytes:
    """The session-signing key in `path`, created (random, mode 0600) when it does not exist yet.

    A key file that other users can read is refused: whoever reads it can forge any session.
    """
    path = Path(path)
    for _ in range(2):
        try:
            st = path.stat()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another worker made it first: read theirs
                continue
            try:
                os.write(fd, secrets.token_hex(32).encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            continue
        if st.st_mode & 0o077:
            raise AuthError(f"session key file {path} can be read by other users (mode "
                            f"{oct(st.st_mode & 0o777)}); expected 0600: run `chmod 600 {path}`")
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise AuthError(f"session key file {path} holds {len(key)} characters; expected at least 32 "
                            "(delete it and a new one is made)")
        return key.encode("ascii")
    raise AuthError(f"session key file {path} could not be created or read")


# ------------------------------------------------------------------------------------------ audit log


class AuditLog:
    """Append-only JSON lines (`at`, `event`, `user`, `roles`, ...); each record is one `write` on a file
    opened with O_APPEND, so concurrent workers never interleave lines. The file is created with mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, event: str, viewer: Viewer | None, **fields: Any) -> dict[str, Any]:
        """Append one record and return it; a failure raises (an opening that cannot be logged is refused)."""
        record = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "user": viewer.name if viewer else None,
            "roles": sorted(viewer.roles) if viewer else [],
            "dev_mode": bool(viewer and viewer.is_dev),
            **fields,
        }
        line = (json.dumps(record, sort_keys=True, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return record

    def read(self) -> list[dict[str, Any]]:
        """Every record, oldest first (for tests and reviews)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# -------------------------------------------------------------------------------------------- masking


def mask(df: pl.DataFrame, viewer: Viewer | None) -> pl.DataFrame:
    """`df` with its personal-data columns (`PERSONAL_COLUMNS`) masked unless the viewer may see them:
    text becomes `MASK` (empty stays empty), other types become null. The one place masking happens."""
    if viewer is not None and viewer.sees_personal_data:
        return df
    exprs = []
    for name, dtype in df.schema.items():
        if name not in PERSONAL_COLUMNS:
            continue
        if dtype == pl.String:
            exprs.append(pl.when(pl.col(name).is_not_null()).then(pl.lit(MASK)).otherwise(None).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.with_columns(exprs) if exprs else df


def masked_value(value: Any, viewer: Viewer | None) -> Any:
    """One personal value as the viewer may see it (for text built outside a frame)."""
    if value is None or (viewer is not None and viewer.sees_personal_data):
        return value
    return MASK if isinstance(value, str) else None


# -------------------------------------------------------------------------------------- pages and roles


def page_allows(page: Mapping[str, Any], viewer: Viewer | None) -> bool:
    """Whether `viewer` may open a page of `dash.page_registry`: public pages always; others when signed in
    with one of the page's declared `roles` (a page that declares none is shown to nobody)."""
    if page.get("module") in PUBLIC_PAGES:
        return True
    if viewer is None:
        return False
    return bool(viewer.roles & set(page.get("roles") or ()))


def allowed_roles(page: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(r for r in ROLES if r in set(page.get("roles") or ()))


def landing_path(viewer: Viewer | None) -> str:
    """The first page in navigation order the viewer may open (the login page when there is none)."""
    import dash

    for page in dash.page_registry.values():
        if page.get("path_template") is None and page.get("module") not in PUBLIC_PAGES \
                and page.get("nav", True) and page_allows(page, viewer):
            return page["relative_path"]
    return LOGIN_PATH


@dataclass
class AuthState:
    """The per-app objects of authentication, kept in `server.extensions["opencem.auth"]`."""

    settings: Settings
    users: UserStore
    audit: AuditLog
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @property
    def dev_mode(self) -> bool:
        return self.settings.dev_mode

    def dev_viewer(self) -> Viewer:
        roles = normalise_roles(self.settings.dev_roles, where="OPENCEM_DEV_ROLES") or ROLES
        return Viewer(name="developer", roles=frozenset(roles), is_dev=True)


def auth_state() -> AuthState | None:
    from flask import current_app, has_app_context

    return current_app.extensions.get("opencem.auth") if has_app_context() else None


def current_viewer() -> Viewer | None:
    """Who makes the current request: the development-mode visitor, the signed-in user, or None."""
    from flask import g, has_request_context, session

    state = auth_state()
    if state is None or not has_request_context():
        return None
    if "opencem_viewer" in g:
        return g.opencem_viewer
    viewer = None
    if state.dev_mode:
        viewer = state.dev_viewer()
    else:
        name = session.get("user")
        user = state.users.get(name) if isinstance(name, str) else None
        if user is not None and hmac.compare_digest(str(session.get("pw", "")), user.fingerprint):
            viewer = Viewer(name=user.name, roles=frozenset(user.roles))
    g.opencem_viewer = viewer
    return viewer


def audit(event: str, **fields: Any) -> dict[str, Any] | None:
    """Append an event of the current viewer to the app's audit log (None outside an app)."""
    state = auth_state()
    if state is None:
        return None
    from flask import has_request_context, request

    if has_request_context():
        fields.setdefault("remote_addr", request.remote_addr)
    return state.audit.write(event, current_viewer(), **fields)


def guard_layout(module: str, layout: Callable[..., Any]) -> Callable[..., Any]:
    """The page's `layout`, served only to viewers whose roles the page declares; others get a refusal
    (and the refusal is audited), visitors who are not signed in a link to the login page."""

    def guarded(**kwargs: Any) -> Any:
        import dash

        from app.components import create_refusal

        page = dash.page_registry.get(module, {"module": module})
        viewer = current_viewer()
        if page_allows(page, viewer):
            return layout(**kwargs)
        if viewer is None:
            return create_refusal(page.get("name", module), sign_in=LOGIN_PATH)
        audit("refused", page=_page_path(page) or module, **{k: v for k, v in kwargs.items()
                                                                        if k.endswith("_id")})
        return create_refusal(page.get("name", module), roles=[ROLE_LABELS[r] for r in allowed_roles(page)],
                              viewer_roles=viewer.role_label, home=landing_path(viewer))

    guarded.__wrapped__ = layout  # type: ignore[attr-defined]
    guarded.__name__ = getattr(layout, "__name__", "layout")
    return guarded


def _page_path(page: Mapping[str, Any] | None) -> str | None:
    """A page's path as declared (`/zone/<zone_id>` for a template), for messages and the audit log."""
    return None if not page else page.get("path_template") or page.get("path")


def _callback_page(app, output: str | None) -> tuple[str | None, Mapping[str, Any] | None]:
    """The module that defines the server callback of `output`, and its page (None when not a page)."""
    import dash

    spec = app.callback_map.get(output) if output else None
    fn = spec.get("callback") if spec else None
    if fn is None:
        return None, None
    module = getattr(inspect.unwrap(fn), "__module__", None)
    return module, dash.page_registry.get(module) if module else None


def _safe_next(value: str | None) -> str | None:
    """A redirect target only when it is a path on this site (no scheme, no host, no `//`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    parsed = urlparse(value)
    return value if not parsed.scheme and not parsed.netloc else None


def _same_origin(request) -> bool:
    """A form post from this site (or from a client that sends no Origin, like curl): not cross-site."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlparse(origin).netloc == request.host


def init_app(app, settings: Settings) -> AuthState:
    """Wire authentication into a Dash app: the session key, login and logout endpoints, the gate on
    every request, and the role guard on every page layout. Call after the pages are registered."""
    import dash
    import flask

    server = app.server
    state = AuthState(settings=settings, users=UserStore(settings.users_path),
                      audit=AuditLog(settings.audit_log_path))
    server.extensions["opencem.auth"] = state
    if settings.dev_mode:
        server.secret_key = secrets.token_hex(32)  # nothing is signed in with it: no login in dev mode
        log.warning("development mode: no login, every visitor has roles %s", state.dev_viewer().role_label)
    else:
        server.secret_key = load_secret_key(settings.secret_key_path)
    server.config.update(
        SESSION_COOKIE_NAME="opencem_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
    )
    for module, page in dash.page_registry.items():
        layout = page.get("layout")
        if callable(layout):
            page["layout"] = guard_layout(module, inspect.unwrap(layout))

    def login() -> flask.Response:
        request, session = flask.request, flask.session
        if not _same_origin(request):
            flask.abort(403)
        if state.dev_mode:
            return flask.redirect("/", code=303)
        name = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        target = _safe_next(request.form.get("next"))
        retry = {"next": target} if target else {}
        if state.throttle.blocked(name):
            state.audit.write("login_refused", None, attempted_user=name[:64], reason="too many failures",
                              remote_addr=request.remote_addr)
            return flask.redirect(f"{LOGIN_PATH}?{urlencode({'error': 'throttled', **retry})}", code=303)
        user = state.users.authenticate(name, password)
        if user is None:
            state.throttle.failed(name)
            state.audit.write("login_failed", None, attempted_user=name[:64], remote_addr=request.remote_addr)
            return flask.redirect(f"{LOGIN_PATH}?{urlencode({'error': 'invalid', **retry})}", code=303)
        state.throttle.succeeded(name)
        session.clear()
        session.permanent = True
        session.update(user=user.name, pw=user.fingerprint, at=int(time.time()))
        viewer = Viewer(name=user.name, roles=frozenset(user.roles))
        flask.g.opencem_viewer = viewer
        state.audit.write("login", viewer, remote_addr=request.remote_addr)
        return flask.redirect(target or landing_path(viewer), code=303)

    def logout() -> flask.Response:
        if not _same_origin(flask.request):
            flask.abort(403)
        viewer = current_viewer()
        if viewer is not None and not viewer.is_dev:
            state.audit.write("logout", viewer, remote_addr=flask.request.remote_addr)
        flask.session.clear()
        return flask.redirect(LOGIN_PATH, code=303)

    server.add_url_rule(LOGIN_POST, "opencem_login", login, methods=["POST"])
    server.add_url_rule(LOGOUT_POST, "opencem_logout", logout, methods=["POST"])

    def gate() -> flask.Response | None:
        """Runs before every request: lets through what needs no session, refuses the rest when the
        viewer may not have it (a page's callbacks included), and sends anonymous page loads to login."""
        request = flask.request
        path = request.path
        if path.startswith(OPEN_PREFIXES) or path in (LOGIN_POST, LOGOUT_POST):
            return None
        viewer = current_viewer()
        if path == "/_dash-update-component":
            body = request.get_json(silent=True) or {}
            module, page = _callback_page(app, body.get("output"))
            if page is not None:
                if page_allows(page, viewer):
                    return None
            elif viewer is not None or module in ROUTER_MODULES or module is None:
                return None
            state.audit.write("refused_callback", viewer, page=_page_path(page) or module,
                              remote_addr=request.remote_addr)
            return flask.make_response(
                flask.jsonify(error="not allowed: your roles may not see this page" if viewer
                              else "not signed in"), 403 if viewer else 401)
        if path.startswith("/_dash-"):
            return None  # the app's frame and its callback list: no data
        if viewer is None and not path.startswith(LOGIN_PATH):
            if path.startswith("/opencem/") or request.method not in ("GET", "HEAD"):
                return flask.make_response(flask.jsonify(error="not signed in"), 401)
            full = request.full_path.rstrip("?")
            return flask.redirect(f"{LOGIN_PATH}?{urlencode({'next': full})}" if path != "/" else LOGIN_PATH)
        return None

    server.before_request(gate)
    return state


# ------------------------------------------------------------------------------------------- the CLI


def _read_password(args) -> str:
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError("no password: pipe it in with --password-stdin, or run the command in a terminal")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password has {len(password)} characters; expected at least {MIN_PASSWORD_LENGTH}")
    return password


def cli_user(args, settings: Settings) -> int:
    """`opencem user add NAME --role R [--role R2] [--password-stdin]`, `user list`, `user remove NAME`.

    `add` of an existing name replaces its roles and password (and so ends its sessions).
    """
    path = Path(args.users_file) if getattr(args, "users_file", None) else settings.users_path
    try:
        users = read_users(path)
    except AuthError as e:
        raise UsageError(str(e)) from None
    action = args.action
    result: dict[str, Any] = {"command": "user", "action": action, "ok": True, "users_file": str(path)}
    if action == "list":
        result["users"] = [{"name": u.name, "roles": list(u.roles), "created_at": u.created_at}
                           for u in sorted(users.values(), key=lambda u: u.name)]
        human = "\n".join(f"{u['name']}: {', '.join(u['roles'])}" for u in result["users"]) or \
            f"no users in {path}: add one with `opencem user add NAME --role ROLE`"
    else:
        if not args.name:
            raise UsageError(f"`opencem user {action}` needs a user name")
        name = check_user_name(args.name, where=f"opencem user {action}")
        if action == "add":
            roles = normalise_roles(args.role or [], where="opencem user add")
            if not roles:
                raise UsageError(f"opencem user add: give one or more --role of {', '.join(ROLES)}")
            password = _read_password(args)
            existed = name in users
            users[name] = User(name=name, roles=roles, password_hash=hash_password(password),
                               created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
            write_users(path, users)
            result.update(user=name, roles=list(roles), replaced=existed)
            human = f"{'updated' if existed else 'added'} user {name} ({', '.join(roles)}) in {path}"
        elif action == "remove":
            if name not in users:
                raise UsageError(f"no user {name!r} in {path}")
            del users[name]
            write_users(path, users)
            result.update(user=name)
            human = f"removed user {name} from {path}"
        else:
            raise UsageError(f"unknown action {action!r}; expected add, list or remove")
    if getattr(args, "json", False):
        print(json.dumps(result, sort_keys=True))
    else:
        print(human, file=sys.stderr)
    return 0
