"""Output files that are never clobbered, shared, half-written or written through a link.

* ``check_target``: refuse, before anything is written, an output that is not a plain file path
  we may replace: a directory, a device or FIFO, a symbolic link, the config or an input being
  read, an existing file without ``overwrite``, an immutable or read-only file, a name too long.
* ``OutputLock``: a run owns its output for its whole life: an advisory lock (``flock``) on a
  hidden lock file next to it.  The kernel drops the lock when the process dies, so a killed run
  never leaves a stale lock; a second run on the same output is refused with the holder's pid.
* ``temporary``: a new file next to the target, created with O_EXCL | O_NOFOLLOW under a unique
  name, so no two runs share one and no stale link is followed; ``replace`` renames it over the
  target only when the target is absent or a regular file.
* ``write_whole``: a command's output (a figure, a movie, a table, a report file) written through all of the
  above: the lock, the refusals, a temporary renamed over the target; a failed write is one OutputError line.
* ``claim_directory``: a directory a command fills with its files (a validation report): new, empty, or
  marked as made by that command before; never someone else's.
* A run's *family* is its output ``NAME``, its checkpoint ``NAME.ckpt``, its lock ``.NAME.lock`` and its
  temporaries ``.NAME.XXXXXXXX.partial``: ``check_name`` refuses an output named like a member of another
  one's family, so no command can take (or clean up) another run's checkpoint, lock or temporary.
* ``sparse_copy``: copy a file keeping its holes (histories preallocate their unwritten rows
  sparsely; a plain copy would write them out as zeros).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path

from ..errors import ConfigError, OutputError

#: Suffix of every temporary file (``.NAME.XXXXXXXX.partial``): counted in the name length check.
TEMP_SUFFIX = ".partial"
_TEMP_EXTRA = 1 + 1 + 8 + len(TEMP_SUFFIX)  # leading dot, dot, random part, suffix


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _plain_text(path, key: str, kind: str) -> str:
    """``path`` as text: ConfigError naming ``key`` if it is blank or holds control characters."""
    text = os.fspath(path)
    if not text.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ConfigError(f"{key}: got {text!r}, allowed: a non-empty {kind} path without control characters")
    return text


def reserved(name: str) -> str | None:
    """What ``name`` is reserved for in a run's family (a checkpoint, a lock, a temporary), or None."""
    if name.endswith(".ckpt"):
        return "a run's checkpoint (NAME.ckpt)"
    if name.startswith(".") and name.endswith(".lock"):
        return "a run's lock file (.NAME.lock)"
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        return "a temporary file (.NAME.XXXXXXXX.partial)"
    return None


def check_name(path, key: str, member: bool = False) -> Path:
    """A usable path: not empty, no control characters, its directory exists, its name (plus
    the temporary suffixes) fits the file system's NAME_MAX, and (unless ``member``: a run naming its own
    checkpoint) it is not a name reserved for a run's family."""
    text = _plain_text(path, key, "file")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8: the history stores its path in its config (UTF-8)
        raise ConfigError(f"{key}: got {text!r}, allowed: a path that is valid UTF-8") from None
    path = Path(text)
    if not path.name.strip() or text.endswith(os.sep):
        raise ConfigError(f"{key}: got {text!r}, allowed: a path ending in a file name (not blank, not a directory)")
    what = None if member else reserved(path.name)
    if what:
        raise ConfigError(f"{key}: got {text!r}, a name meanfield reserves for {what}; choose another name")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: directory {str(parent)!r} does not exist")
    limit = _name_max(parent)
    if len(os.fsencode(path.name)) + _TEMP_EXTRA + len(".ckpt") > limit:
        raise ConfigError(f"{key}: the file name {path.name[:40]!r}... is {len(os.fsencode(path.name))} bytes, "
                          f"allowed: at most {limit - _TEMP_EXTRA - len('.ckpt')} (NAME_MAX {limit} with the "
                          "temporary and checkpoint suffixes)")
    return path


def _lstat(path: Path, key: str):
    """``os.lstat(path)``, None if nothing is there; ConfigError naming ``key`` if it cannot be looked at."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot inspect {str(path)!r} ({exc.strerror})") from None


def _same_file(a: Path, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_target(path, key: str, overwrite: bool = False, inputs=(), member: bool = False) -> Path:
    """Refuse (ConfigError, one line naming ``key``) a target we must not create or replace.

    ``inputs``: (description, path) pairs being read by this command; the target may not be one of
    them (not even with ``overwrite``).  ``member``: the target is a member of the caller's own family.
    """
    path = check_name(path, key, member)
    for what, other in inputs:
        if other and _same_file(path, other):
            raise ConfigError(f"{key}: {str(path)!r} is {what}, which this command reads; choose another path")
    st = _lstat(path, key)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: directory {str(path.parent)!r} is not writable")
    if st is None:
        return path
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{key}: {str(path)!r} is a symbolic link (to {os.readlink(path)!r}), allowed: a regular "
                          "file path; give the path it points to, or another path")
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{key}: {str(path)!r} is a directory, allowed: a file path")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{key}: {str(path)!r} is not a regular file (a device, FIFO or socket), allowed: a "
                          "regular file path")
    if not overwrite:
        raise ConfigError(f"{key}: {str(path)!r} exists; pass --overwrite (overwrite=True in Python) or choose another path")
    _check_replaceable(path, key)
    return path


def _check_replaceable(path: Path, key: str) -> None:
    """An existing regular file we may replace: not immutable or append-only, not read-only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{key}: {str(path)!r} cannot be replaced ({exc.strerror}: read-only or immutable)") \
            from None


class OutputLock:
    """Exclusive ownership of an output for the life of a run (a context manager).

    The lock is ``flock`` on ``.NAME.lock`` in the output's directory, holding the owner's pid.  It
    is removed on release; the kernel releases it when the process dies however it dies.
    """

    def __init__(self, path, key: str = "output.path"):
        self.path = Path(path)
        self.key = key
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self.fd = None

    def acquire(self) -> "OutputLock":
        """Take the lock or raise ConfigError naming the pid that holds it."""
        for _ in range(100):  # the file may be unlinked by its releasing owner between open and flock
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise ConfigError(f"{self.key}: cannot create the lock file {str(self.lock_path)!r} "
                                  f"({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"{self.key}: {str(self.path)!r} is in use by another meanfield process "
                                      f"(pid {holder}); wait for it to finish or choose another path") from None
                raise
            try:
                st = os.fstat(fd)
                same = st.st_ino == os.stat(self.lock_path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same and (not stat.S_ISREG(st.st_mode) or st.st_nlink > 1 or st.st_size > 64
                         or not os.pread(fd, 64, 0).strip().isdigit() and st.st_size):
                os.close(fd)  # a hard link to, or a file of, someone else's: never truncate it
                raise ConfigError(f"{self.key}: {str(self.lock_path)!r} exists and is not a meanfield lock file "
                                  "(a pid); remove or rename it")
            if same:
                self.fd = fd
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                except OSError as exc:  # a full or failing disk: nothing of ours may stay
                    self.release()
                    raise ConfigError(f"{self.key}: cannot write the lock file {str(self.lock_path)!r} "
                                      f"({exc.strerror}); nothing was written") from None
                return self
            os.close(fd)  # we locked a file its owner had just removed: try again
        raise ConfigError(f"{self.key}: could not lock {str(self.path)!r}")

    def release(self) -> None:
        """Remove the lock file and drop the lock (safe to call twice)."""
        if self.fd is None:
            return
        try:  # only our own lock file: whatever was renamed to its name since is someone else's
            ours, now = os.fstat(self.fd), os.lstat(self.lock_path)
            if (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino):
                os.unlink(self.lock_path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def writer_of(path) -> int | None:
    """The pid of the live meanfield process that holds ``path``'s OutputLock (a run writing it),
    else None.  Reads the lock file's pid without taking the lock (that would make a run starting
    at the same instant fail)."""
    path = Path(path)
    if not path.name:  # '.', '/': a directory, which no run writes
        return None
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None  # a stale lock file: its process is gone
    except PermissionError:
        pass  # alive, another user's
    return int(text)


def temporary(path) -> Path:
    """A new, empty temporary file next to ``path`` (``.NAME.XXXXXXXX.partial``), created with
    O_EXCL | O_NOFOLLOW: unique to this call, never an existing file or link."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent or ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets the mode a plain open would
    finally:
        os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def stale_temporaries(path) -> list[Path]:
    """Temporary files of ``path`` left by killed processes (call while holding its lock)."""
    path = Path(path)
    out = []
    for stem in (path.name, path.name + ".ckpt"):
        for p in path.parent.glob(f".{_glob_escape(stem)}.*{TEMP_SUFFIX}"):
            if len(p.name) == len(stem) + _TEMP_EXTRA and os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def replace(tmp, path, key: str = "output.path") -> None:
    """Rename ``tmp`` over ``path`` if ``path`` is absent or a regular file (never a link, a directory or a
    special file, which may have appeared since the target was checked); else remove ``tmp`` and raise
    ConfigError."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"{key}: {str(path)!r} became a link, directory or special file while this command ran; "
                          "nothing replaced")
    os.replace(tmp, path)


def sparse_copy(src, dst) -> None:
    """Copy ``src`` onto the existing file ``dst`` (opened without following links), keeping holes
    and the permission bits."""
    with open(src, "rb") as fi:
        fd = os.open(dst, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        with open(fd, "wb") as fo:
            os.fchmod(fd, stat.S_IMODE(os.fstat(fi.fileno()).st_mode))
            size = os.fstat(fi.fileno()).st_size
            pos = 0
            while pos < size:
                try:
                    start = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
                except OSError:  # ENXIO: only a hole is left
                    break
                end = os.lseek(fi.fileno(), start, os.SEEK_HOLE)
                os.lseek(fi.fileno(), start, os.SEEK_SET)
                fo.seek(start)
                left = end - start
                while left:
                    chunk = fi.read(min(left, 1 << 22))
                    if not chunk:
                        break
                    fo.write(chunk)
                    left -= len(chunk)
                pos = end
            fo.truncate(size)
            fo.flush()
            os.fsync(fo.fileno())


def write_whole(out, read, overwrite: bool, write, key: str = "-o", locked: bool = False):
    """Call ``write(tmp)`` on a temporary beside ``out`` and rename it over ``out``: one writer per output (its
    lock), never half a file, never over an existing one without ``overwrite``, never onto an input (``read``:
    a (description, path) pair or a list of them).  ``locked``: the caller already holds ``out``'s lock.
    A failed write (a full or read-only disk) leaves ``out`` as it was and raises OutputError naming it.
    Returns what ``write`` returned."""
    out = Path(out)
    inputs = [read] if isinstance(read, tuple) and len(read) == 2 and isinstance(read[0], str) else list(read or ())
    lock = contextlib.nullcontext() if locked else OutputLock(out, key)
    with lock:  # one writer per output, so a killed one's temporaries can go
        check_target(out, key, overwrite, inputs)
        for stale in stale_temporaries(out):
            stale.unlink(missing_ok=True)
        tmp = None
        try:
            tmp = temporary(out)
            got = write(tmp)
            replace(tmp, out, key)
        except OSError as exc:
            kept = "it keeps what it held before" if out.exists() else "nothing was written"
            raise OutputError(f"{key}: writing {str(out)!r} failed ({exc.strerror or exc}); {kept}") from None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return got


#: The file that marks a directory as filled by a meanfield command (its content: the command's name).
MARKER = ".meanfield"


def check_directory(path, key: str) -> Path:
    """A usable directory path (existing or to be made in an existing parent): not empty, no control characters,
    not a symbolic link, not an existing file (ConfigError naming ``key``)."""
    text = _plain_text(path, key, "directory")
    path = Path(text)
    st = _lstat(path, key)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{key}: {text!r} is a symbolic link, allowed: a directory (made if missing); give the "
                          "path it points to")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{key}: {text!r} exists and is not a directory, allowed: a directory (made if missing)")
    if st is None and not path.absolute().parent.is_dir():
        raise ConfigError(f"{key}: directory {str(path.parent)!r} does not exist")
    return path


def claim_directory(path, key: str, command: str, legacy=()) -> Path:
    """Make or take the directory ``path`` for ``command``'s files: a new or empty directory, or one an earlier
    ``command`` made (its marker file says so, or it holds every name in ``legacy``).  Refused (ConfigError): a
    link, a file, a directory holding anything else, one marked by another command."""
    path = check_directory(path, key)  # absent, or a directory (not a link)
    st = _lstat(path, key)
    marker = path / MARKER
    if st is None:
        try:
            path.mkdir()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot make the directory {str(path)!r} ({exc.strerror})") from None
    else:
        try:
            entries = os.listdir(path)
            mark = marker.read_text() if entries and marker.is_file() and not marker.is_symlink() else None
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read the directory {str(path)!r} ({exc.strerror})") from None
        earlier = set(entries) >= set(legacy)  # made before directories were marked
        if entries and (mark or "").strip() != command and not (legacy and earlier):
            raise ConfigError(f"{key}: {str(path)!r} holds files that meanfield {command} did not write, allowed: "
                              "a new or empty directory, or an earlier report's")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: directory {str(path)!r} is not writable")
    if not marker.is_file():
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(fd, "w") as fh:
                fh.write(command + "\n")
        except OSError as exc:
            raise ConfigError(f"{key}: cannot write in {str(path)!r} ({exc.strerror})") from None
    return path
