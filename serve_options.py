"""The explorer's launch options: one argument parser for `python app.py` and `hsg serve`.

Standard library only, so `--help` answers before torch and gradio load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "checkpoint" / "hsg_demo.pt"
DEFAULT_IMAGES = ASSETS / "demo_images"
SHIPPED_INDEX = ASSETS / "demo_index"  # the index of DEFAULT_IMAGES built with DEFAULT_CHECKPOINT
MAX_SESSIONS = (
    64  # sessions whose state (image + hierarchy, up to ~20 MB) is kept; least recent dropped
)
AUTH_ENV = "HSG_AUTH"  # "user:password": require this login (or give --auth-file)
NOTE = "hsg - "  # prefix of the lines that tell what the explorer is doing (errors are "hsg: error: ...")


def add_serve_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every option of the explorer to `p` (returned)."""
    p.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="model checkpoint (default: the demo's)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="image folder to explore: indexed on first use, with a progress "
        "bar (default: the demo images, or with --index the folder that index covers)",
    )
    p.add_argument(
        "--index",
        default=None,
        help="index folder (default: the shipped demo index, or one built into the cache)",
    )
    p.add_argument(
        "--data-root", action="append", default=[], help="extra folder the Index tab may read"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="public gradio link (off by default)")
    p.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N (auto = CUDA when present)"
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=MAX_SESSIONS,
        help="sessions whose state is kept in memory",
    )
    p.add_argument(
        "--auth-file",
        default=None,
        help=f"require a login: a file of user:password lines (or set {AUTH_ENV}=user:password)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`python app.py` options (`argv` None: the command line)."""
    parser = argparse.ArgumentParser(prog="app.py", description="HSG Explorer (Gradio)")
    return add_serve_options(parser).parse_args(argv)


def parse_logins(lines: list[str], source: str) -> list[tuple[str, str]]:
    """(user, password) pairs from "user:password" lines; blank lines and # comments are skipped.

    Raises:
        ValueError: a line without a user or a password (named by number, never echoed).
    """
    logins = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, _, password = line.rstrip("\r\n").partition(":")
        if not user.strip() or not password:
            raise ValueError(f"{source} line {number}: expected user:password")
        logins.append((user.strip(), password))
    return logins


def read_logins(auth_file: str | None, env_value: str | None) -> list[tuple[str, str]] | None:
    """The logins the explorer requires (`--auth-file` lines, then `$HSG_AUTH`), or None for none.

    Raises:
        ValueError, OSError: an unreadable or malformed file, or a malformed `$HSG_AUTH`.
    """
    logins = []
    if auth_file:
        logins += parse_logins(Path(auth_file).read_text(encoding="utf-8").splitlines(), auth_file)
        if not logins:
            raise ValueError(f"{auth_file}: no user:password line")
    if env_value:
        logins += parse_logins([env_value], f"${AUTH_ENV}")
    return logins or None


def announce_start() -> None:
    """Tell the terminal the explorer is starting (its imports take seconds before anything else prints)."""
    import sys

    print(f"{NOTE}starting the explorer (loading gradio and torch)", file=sys.stderr, flush=True)
