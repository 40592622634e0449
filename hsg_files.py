"""Files, for `hsg_core`, `index`, `cli` and `app` alike (standard library only, so both packages may
import it: `index` never imports `hsg_core`, and `hsg_core` never imports faiss or gradio).

Which files are images, and which may be read:

* `IMAGE_SUFFIXES`: the one list of suffixes that make a file an image, for `hsg segment`, index
  builds and training alike.
* `list_image_files`: the image files under a data root. An entry is listed only when its real
  path (every symbolic link resolved) lies inside the root's real path: a link inside the root
  that points inside it is followed, a link that points outside is skipped (and reported), so a
  link never publishes, indexes or trains on a file from elsewhere. Only regular files are listed
  (dangling links, loops, pipes and folders named like images are not), and each real folder is
  visited once, so folder-link loops end.
* `is_inside`: the same containment test, for a path about to be opened.
* `file_sha256`: the sha256 of a file's bytes (image identity, checkpoint hash, index checksums).
* `escape_controls`: text made safe to print on one line (file names may hold newlines and
  terminal escapes).

Writing them:

* `atomic_write` / `atomic_write_path`: the content goes to a temp file beside the target (a
  unique name from `tempfile.mkstemp`, so threads and processes writing the same path never share
  one), is fsynced, renamed over the target, and the folder is fsynced. A reader, or a process
  restarted after SIGKILL, sees the old file or the new one, never a partial file.
* `folder_lock`: an exclusive (or shared) `flock` on a folder itself, released when the holder
  ends, even by SIGKILL. No lock file is left behind. On systems without `fcntl` (Windows) and on
  file systems that refuse `flock` on a folder, no lock is taken and a warning is logged once.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

LOG = logging.getLogger(__name__)
TEMP_SUFFIX = ".part"
_TEMP_NAME = re.compile(r".+\.[A-Za-z0-9_]{6,}\.part$")  # "<target name>.<mkstemp letters>.part"
_WARNED: set[str] = set()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with other threads.
FILE_MODE = 0o666 & ~_read_umask()


class FolderBusyError(OSError):
    """Another job holds the lock of the folder (the message names the folder)."""


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def is_temp_part(name: str) -> bool:
    """True for the name of a temp file left by `atomic_write` (a writer killed mid-write)."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_parts(path: str | os.PathLike) -> None:
    """Delete temp files of `path` left by writers killed mid-write (call it while no one writes `path`)."""
    path = Path(path)
    for stale in path.parent.glob(glob.escape(path.name) + ".*" + TEMP_SUFFIX):
        stale.unlink(missing_ok=True)


def _new_temp(path: Path) -> Path:
    """A new empty temp file beside `path`, with the usual umask-based mode (mkstemp gives 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return Path(tmp)


def atomic_write_path(path: str | os.PathLike, write: Callable[[Path], object]) -> int:
    """Call `write(tmp)` with the path of a fresh temp file beside `path`, then fsync and rename it.

    For writers that need a file name (faiss, pyarrow). `write` may replace or truncate `tmp`.

    Returns:
        Size in bytes of the file renamed into place.
    """
    path = Path(path)
    tmp = _new_temp(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
            size = os.fstat(handle.fileno()).st_size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(fh)` on a temp file beside `path`, then fsync and rename it over `path`."""

    def write_file(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    atomic_write_path(path, write_file)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike,
    busy: str,
    *,
    shared: bool = False,
    error: type[OSError] = FolderBusyError,
) -> Iterator[None]:
    """Hold an exclusive (or shared) lock on `folder` for the duration of the `with` block.

    The lock is an `flock` on the folder's own descriptor: it never waits, covers threads of this
    process as well as other processes, and ends with its holder (even after SIGKILL).

    Args:
        folder: an existing folder.
        busy: the one-line message of the error raised when another holder has the lock.
        shared: take a shared lock (several shared holders, no exclusive one).
        error: the OSError subclass to raise (called with `busy`).

    Raises:
        error: another holder has a conflicting lock.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        _warn_once("platform", "index folders are not locked on this system (no fcntl)")
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                _warn_once(
                    str(folder),
                    f"{folder}: cannot be locked ({err.strerror}); jobs are not serialised",
                )
            else:
                raise error(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        LOG.warning(message)


IMAGE_SUFFIXES = (".avif", ".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI_CONTROLS = frozenset(  # marks and overrides that reorder what a terminal shows
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def is_image_name(name: str | os.PathLike) -> bool:
    """True when the file name ends in one of `IMAGE_SUFFIXES` (case-insensitive)."""
    return os.fspath(name).lower().endswith(IMAGE_SUFFIXES)


def _within(real: str, real_root: str) -> bool:
    return real == real_root or os.path.commonpath([real_root, real]) == real_root


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when `path`, with every link resolved, lies inside `root` (itself resolved)."""
    return _within(os.path.realpath(path), os.path.realpath(root))


def list_image_files(
    root: str | os.PathLike,
    *,
    on_error: Callable[[OSError], None] | None = None,
    on_outside: Callable[[str], None] | None = None,
) -> list[str]:
    """Image files under `root`, recursively, as sorted "/"-separated paths relative to it.

    Rules in the module docstring. `on_error` gets the OSError of a folder that cannot be listed;
    `on_outside` gets the relative path of each link skipped because it leads out of the root.

    Raises:
        FileNotFoundError: `root` is not a folder.
    """
    top = Path(root)
    if not top.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    real_root = os.path.realpath(top)
    found: list[str] = []
    seen: set[str] = set()
    for folder, dirnames, filenames in os.walk(top, followlinks=True, onerror=on_error):
        real = os.path.realpath(folder)
        rel = Path(folder).relative_to(top)
        if real in seen or not _within(real, real_root):
            dirnames[:] = []
            if real not in seen and on_outside is not None:
                on_outside(rel.as_posix())
            continue
        seen.add(real)
        dirnames.sort()
        found += _images_of(folder, rel, filenames, real_root, on_outside)
    return sorted(found)


def _images_of(
    folder: str,
    rel: Path,
    names: list[str],
    real_root: str,
    on_outside: Callable[[str], None] | None,
) -> list[str]:
    """The listable image files among `names` of one folder (relative paths)."""
    out = []
    for name in names:
        if not is_image_name(name):
            continue
        target = os.path.realpath(os.path.join(folder, name))
        if not _within(target, real_root):
            if on_outside is not None:
                on_outside((rel / name).as_posix())
        elif os.path.isfile(target):
            out.append((rel / name).as_posix())
    return out


def _escape_char(char: str) -> str:
    """`char` itself when printable, else its escape (see `escape_controls`)."""
    if char.isprintable() and char not in _BIDI_CONTROLS:
        return char
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    category = unicodedata.category(char)
    if category == "Cs":  # an undecodable file-name byte (surrogateescape)
        return "\ufffd"
    if category == "Cc":
        return f"\\x{ord(char):02x}"
    if category in ("Zl", "Zp") or char in _BIDI_CONTROLS:
        return f"\\u{ord(char):04x}"
    return char


def escape_controls(text: str) -> str:
    """`text` with every control character shown as an escape (newline as \\n, ESC as \\x1b,
    line separators and bidi overrides by their code point, e.g. \\u202e) and undecodable bytes
    as U+FFFD: one line, printable under any locale, unable to move the cursor or forge a line."""
    return "".join(_escape_char(c) for c in text)


def file_sha256(path: str | os.PathLike, block_bytes: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in blocks (hashlib releases the GIL: threads hash
    files in parallel)."""
    digest = hashlib.sha256()
    block = bytearray(block_bytes)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(block):
            digest.update(view[:count])
    return digest.hexdigest()
