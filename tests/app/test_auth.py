"""Users, passwords, the session key, masking and page roles as plain functions, and the `opencem user` command."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from app import auth
from app.auth import (
    MASK,
    AuditLog,
    AuthError,
    User,
    Viewer,
    hash_password,
    load_secret_key,
    mask,
    page_allows,
    read_users,
    verify_password,
    write_users,
)
from etl.cli import main as cli_main
from etl.config import Settings
from etl.errors import UsageError

CARE = Viewer("carla", frozenset({"care"}))
PLANNER = Viewer("piet", frozenset({"planner"}))


def test_password_hash_is_salted_and_verifies_in_constant_form() -> None:
    a, b = hash_password("s3cret-enough"), hash_password("s3cret-enough")
    assert a != b, "two hashes of one password must differ (random salt)"
    assert a.startswith("scrypt$16384$8$1$") and "s3cret" not in a
    assert verify_password("s3cret-enough", a) and verify_password("s3cret-enough", b)
    assert not verify_password("s3cret-enougH", a)
    assert not verify_password("s3cret-enough", "scrypt$1$2$3$not-base64$xx")
    assert not verify_password("s3cret-enough", "md5$abc")


def test_users_file_round_trip_is_private_and_holds_no_password(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    users = {"carla": User("carla", ("care",), hash_password("carla-password-1"), "2026-01-01T00:00:00+00:00"),
             "o.brien@x": User("o.brien@x", ("planner", "data_steward"), hash_password("other-password"))}
    write_users(path, users)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "carla-password-1" not in text and "other-password" not in text
    back = read_users(path)
    assert back == users
    assert read_users(tmp_path / "missing.toml") == {}


@pytest.mark.parametrize(("body", "expected"), [
    ('[users.bob]\nroles = ["care"]\npassword = "hunter22"\n', "plain `password`"),
    ('[users.bob]\nroles = ["admin"]\npassword_hash = "scrypt$1$1$1$a$b"\n', "'admin' is not one of"),
    ('[users.bob]\nroles = []\npassword_hash = "scrypt$1$1$1$a$b"\n', "no roles"),
    ('[users.bob]\nroles = ["care"]\npassword_hash = "plain"\n', "not an scrypt hash"),
    ("[users.bob\n", "not valid TOML"),
])
def test_a_broken_users_file_is_refused_naming_file_and_user(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "users.toml"
    path.write_text(body)
    with pytest.raises(AuthError) as err:
        read_users(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_user_store_re_reads_the_file_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    store = auth.UserStore(path)
    assert store.authenticate("carla", "carla-password-1") is None and store.error is None
    write_users(path, {"carla": User("carla", ("care",), hash_password("carla-password-1"))})
    assert store.authenticate("carla", "carla-password-1").roles == ("care",)
    assert store.authenticate("carla", "wrong-password") is None
    assert store.authenticate("nobody", "carla-password-1") is None
    path.write_text('[users.carla]\nroles = ["care"]\npassword = "x"\n')  # someone edits it by hand, badly
    assert store.authenticate("carla", "carla-password-1") is None
    assert "plain `password`" in store.error


def test_secret_key_is_made_private_once_and_refused_when_readable(tmp_path: Path) -> None:
    path = tmp_path / "wh" / "secret_key"
    key = load_secret_key(path)
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(path) == key
    path.chmod(0o644)
    with pytest.raises(AuthError, match="expected 0600"):
        load_secret_key(path)


def test_mask_hides_personal_columns_unless_the_role_may_see_them() -> None:
    df = pl.DataFrame({"customer_id": ["C1", "C2"], "name": ["Ana Rossi", None], "msisdn": ["+39312", "+39313"],
                       "home_latitude": [45.1, 45.2], "birth_date": [None, None], "segment": ["vip", "consumer"]},
                      schema_overrides={"birth_date": pl.Date})
    masked = mask(df, PLANNER)
    assert masked["name"].to_list() == [MASK, None]
    assert masked["msisdn"].to_list() == [MASK, MASK]
    assert masked["home_latitude"].to_list() == [None, None] and masked.schema["home_latitude"] == pl.Float64
    assert masked.select("customer_id", "segment").equals(df.select("customer_id", "segment"))
    assert mask(df, CARE).equals(df)
    assert mask(df, None)["name"][0] == MASK
    assert mask(df, Viewer("a", frozenset({"assurance", "planner"})))["name"][0] == "Ana Rossi"


def test_pages_are_open_only_to_the_roles_they_declare() -> None:
    zone = {"module": "app.pages.zone", "roles": ("executive", "planner", "data_steward")}
    assert page_allows(zone, PLANNER) and not page_allows(zone, CARE) and not page_allows(zone, None)
    assert not page_allows({"module": "app.pages.undeclared"}, Viewer("x", frozenset(auth.ROLES)))
    assert page_allows({"module": "app.pages.login"}, None)


def test_audit_log_appends_json_lines_privately(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write("open_customer", CARE, customer_id="CU1")
    log.write("open_customer", PLANNER, customer_id="CU2", personal_data="masked")
    records = log.read()
    assert [(r["user"], r["customer_id"]) for r in records] == [("carla", "CU1"), ("piet", "CU2")]
    assert records[0]["roles"] == ["care"] and records[0]["at"].endswith("Z")
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def _user_args(action: str, name: str | None = None, *roles: str, users_file: Path) -> SimpleNamespace:
    return SimpleNamespace(action=action, name=name, role=list(roles) or None, password_stdin=True,
                           users_file=str(users_file), json=True)


def test_cli_user_add_list_remove(tmp_path: Path, monkeypatch, capsys) -> None:
    users_file = tmp_path / "users.toml"
    settings = Settings(warehouse_dir=tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert auth.cli_user(_user_args("add", "carla", "care", "data-steward", users_file=users_file), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["roles"] == ["care", "data_steward"] and out["replaced"] is False
    assert "a-long-password" not in users_file.read_text()
    assert auth.cli_user(_user_args("list", users_file=users_file), settings) == 0
    assert json.loads(capsys.readouterr().out)["users"][0]["name"] == "carla"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(UsageError, match="at least 10"):
        auth.cli_user(_user_args("add", "bob", "care", users_file=users_file), settings)
    with pytest.raises(UsageError, match="'boss' is not one of"):
        auth.cli_user(_user_args("add", "bob", "boss", users_file=users_file), settings)
    with pytest.raises(UsageError, match="no user 'bob'"):
        auth.cli_user(_user_args("remove", "bob", users_file=users_file), settings)
    assert auth.cli_user(_user_args("remove", "carla", users_file=users_file), settings) == 0
    assert read_users(users_file) == {}


def test_opencem_user_command_writes_the_warehouse_users_file(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("piet-planner-password\n"))
    code = cli_main(["user", "add", "piet", "--role", "planner", "--password-stdin", "--warehouse", str(tmp_path),
                     "--json"])
    assert code == 0, capsys.readouterr().err
    users = read_users(tmp_path / "users.toml")
    assert users["piet"].roles == ("planner",) and verify_password("piet-planner-password",
                                                                    users["piet"].password_hash)
    assert cli_main(["user", "add", "x y", "--role", "care", "--warehouse", str(tmp_path)]) == 2
    assert "not valid" in capsys.readouterr().err


def test_development_mode_is_served_on_loopback_only(tmp_path: Path) -> None:
    from app.main import serve

    with pytest.raises(UsageError, match="127.0.0.1 only"):
        serve(Settings(warehouse_dir=tmp_path, dev_mode=True), host="0.0.0.0")


def test_settings_from_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENCEM_DEV_MODE", "1")
    monkeypatch.setenv("OPENCEM_DEV_ROLES", "planner, marketing")
    monkeypatch.setenv("OPENCEM_USERS_FILE", str(tmp_path / "u.toml"))
    s = Settings.from_env(warehouse=tmp_path / "wh")
    assert s.dev_mode and s.dev_roles == ("planner", "marketing") and s.users_path == tmp_path / "u.toml"
    assert s.secret_key_path == tmp_path / "wh" / "secret_key" and s.audit_log_path == tmp_path / "wh" / "audit.jsonl"
