"""The `opencem` command line: a contract that scripts and schedulers call (see DESIGN.md).

Exit codes: 0 done (or nothing new), 1 checks failed and nothing was published, 2 usage or unreadable
input, 3 another refresh holds the lock. `--json` prints one JSON object on stdout and nothing else
there; human progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from etl.config import Settings
from etl.errors import CheckFailed, LockHeld, OpencemError, UsageError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _emit(result: dict, *, as_json: bool, human: str) -> None:
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        print(human, file=sys.stderr)


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from etl.generate import generate

    truth = generate(
        Path(args.out), customers=args.customers, days=args.days, seed=args.seed, zones=args.zones,
        compress=not args.no_compress, log=_progress,
    )
    counts = {k: v["count"] for k, v in truth.get("inconsistencies", {}).items()}
    _emit({"out": str(args.out), "truth": truth}, as_json=args.json,
          human=f"wrote a synthetic operator to {args.out}; planted: {counts}")
    return EXIT_OK


def _cmd_refresh(args: argparse.Namespace, settings: Settings) -> int:
    from etl.pipeline import refresh

    result = refresh(settings, source=Path(args.source), mapping=Path(args.mapping) if args.mapping else None,
                     engine=args.engine, log=_progress)
    _emit(result.to_dict(), as_json=args.json, human=result.describe())
    return EXIT_OK if result.ok else EXIT_REJECTED


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from etl.status import describe_status, status

    result = status(settings)
    _emit(result, as_json=args.json, human=describe_status(result))
    return EXIT_OK


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    # `models` depends on `etl`, never the reverse: imported only when this command runs.
    from models.train import run

    result = run(settings, log=_progress)
    _emit(result.to_dict(), as_json=args.json, human=result.describe())
    return EXIT_OK if result.ok else EXIT_REJECTED


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    # The one place the command line reaches into the app (imported lazily: `etl` never needs `app`).
    from app.main import serve

    _progress(f"opencem serve: http://{args.host}:{args.port}/ on the warehouse in {settings.warehouse_dir} "
              "(development server; see README for several workers)")
    serve(settings, host=args.host, port=args.port)
    return EXIT_OK


def _delegate(target: str):
    """A command implemented elsewhere (`module:function(args, settings) -> exit code`), imported only
    when that command runs, so `opencem status` never pays for importing the app or the models."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        import importlib

        module, _, function = target.partition(":")
        return getattr(importlib.import_module(module), function)(args, settings)

    return run


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--warehouse", help="warehouse folder (default ./warehouse or $OPENCEM_WAREHOUSE)")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    parser = argparse.ArgumentParser(prog="opencem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", parents=[common], help="write a synthetic operator's extracts")
    g.add_argument("--out", required=True)
    g.add_argument("--customers", type=int, default=3000)
    g.add_argument("--days", type=int, default=28)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--zones", type=int, default=None, help="number of zones (default scales with customers)")
    g.add_argument("--no-compress", action="store_true", help="write daily files as plain CSV")
    g.set_defaults(func=_cmd_generate)

    r = sub.add_parser("refresh", parents=[common], help="load new extracts, build, check and publish")
    r.add_argument("--source", required=True, help="folder of extract files")
    r.add_argument("--mapping", help="TOML mapping for an operator's own exports")
    r.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    r.set_defaults(func=_cmd_refresh)

    t = sub.add_parser("train", parents=[common], help="train, evaluate and publish churn scores")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("serve", parents=[common], help="serve the app on the current version")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8050)
    s.set_defaults(func=_cmd_serve)

    st = sub.add_parser("status", parents=[common], help="the live version, rows, quarantine, freshness")
    st.set_defaults(func=_cmd_status)

    # Users and roles of the app (issue: the 360 view and roles): implemented in app/auth.py.
    u = sub.add_parser("user", parents=[common], help="add, list or remove app users and their roles")
    u.add_argument("action", choices=("add", "list", "remove"))
    u.add_argument("name", nargs="?")
    u.add_argument("--role", action="append", help="a role of the user (repeat for several)")
    u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.add_argument("--users-file", help="users file (default: users.toml in the warehouse folder)")
    u.set_defaults(func=_delegate("app.auth:cli_user"))

    # Alarms between refreshes (issue: service assurance): implemented in etl/live_alarms.py.
    a = sub.add_parser("alarm", parents=[common], help="raise or clear an alarm between refreshes (TMF642)")
    a.add_argument("action", choices=("raise", "clear", "list", "prune"),
                   help="prune removes the files a refreshed alarm of the same id has superseded")
    a.add_argument("--alarm-id")
    a.add_argument("--object-id", help="the cell or site in alarm")
    a.add_argument("--object-type", choices=("cell", "site"))
    a.add_argument("--severity", default="major")
    a.add_argument("--alarm-type", default="communicationsAlarm")
    a.add_argument("--probable-cause", default="unknown")
    a.add_argument("--specific-problem")
    a.add_argument("--not-service-affecting", action="store_true")
    a.add_argument("--raised-at", help="ISO 8601 time the alarm was raised (default: now, UTC)")
    a.add_argument("--cleared-at", help="ISO 8601 time the alarm was cleared (default: now, UTC)")
    a.add_argument("--folder", help="the watched folder (default: live_alarms/ in the warehouse)")
    a.set_defaults(func=_delegate("etl.live_alarms:cli_alarm"))

    # Order-time service qualification (issue: service assurance): implemented in models/feasibility.py.
    f = sub.add_parser("feasibility", parents=[common], help="can a customer or place get a service? (TMF645)")
    f.add_argument("--customer-id")
    f.add_argument("--lat", type=float)
    f.add_argument("--lon", type=float)
    f.add_argument("--service", default="video")
    f.add_argument("--mbps", type=float, default=5.0, help="the service's need in the busy hour")
    f.set_defaults(func=_delegate("models.feasibility:cli_feasibility"))
    return parser


def _fail(args: argparse.Namespace, code: int, message: str) -> int:
    """Report a failure on stderr (and as one JSON object on stdout with --json), and return its exit code."""
    _progress(f"opencem {args.command}: {message}")
    if getattr(args, "json", False):
        print(json.dumps({"command": args.command, "ok": False, "exit_code": code, "error": message},
                         sort_keys=True))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    # Progress of the steps (and of the modules they call, which log through `logging`) goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="  %(name)s: %(message)s")
    for ours in ("etl", "models"):
        logging.getLogger(ours).setLevel(logging.INFO)
    settings = Settings.from_env(warehouse=args.warehouse)
    try:
        return args.func(args, settings)
    except LockHeld as exc:
        return _fail(args, EXIT_LOCKED, str(exc))
    except CheckFailed as exc:
        return _fail(args, EXIT_REJECTED, f"checks failed, nothing published: {exc}")
    except (UsageError, OpencemError, FileNotFoundError) as exc:
        return _fail(args, EXIT_USAGE, str(exc))


if __name__ == "__main__":
    sys.exit(main())
