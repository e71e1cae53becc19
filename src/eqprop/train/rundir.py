"""The rules of a run directory: one process at a time, and no finished run lost by accident.

* :func:`run_lock` holds ``<run dir>/.eqprop.lock`` (pid, host, start time) for the whole run, so
  that a second process started on the same directory is refused with one sentence instead of
  interleaving its rows with the first one's. A lock left by a process that no longer exists on
  this host (a kill -9, a power cut) is stale: it is taken over, with a warning. On Linux the
  lock also records the process's start time, so a pid reused by an unrelated process is seen
  as stale too.
* :func:`check_fresh_start` refuses to start a new run over a directory that already holds one
  (a checkpoint or epoch metrics) unless ``overwrite=True``; ``resume=True`` continues it instead.
  With ``overwrite=True`` the old outputs (checkpoint, CSVs, plot, TensorBoard events) are removed
  first, so nothing of the old run is mixed into the new one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import EqpropError
from .metrics import read_csv

__all__ = ["RunDirectoryError", "run_lock", "check_fresh_start", "LOCK_NAME", "RUN_OUTPUTS"]

log = logging.getLogger(__name__)

LOCK_NAME = ".eqprop.lock"
RUN_OUTPUTS = ("checkpoint.pt", "steps.csv", "metrics.csv", "learning_curve.png", "tensorboard")
"""What a run writes that ``overwrite=true`` removes before a new run starts in the same directory."""


class RunDirectoryError(EqpropError, RuntimeError):
    """A run directory in use by another process, or holding a run that would be overwritten."""


def _read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def _alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs and (when its start time was recorded) is the same process, not a reused pid."""
    if started is not None:
        now = _start_time(pid)
        if now is not None:
            return now == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True


def _create(path: Path, record: dict) -> bool:
    """Create the lock file with its content in one step; False if it exists already."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    try:
        os.link(tmp, path)  # atomic, and the file is complete when it appears
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(record))
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def run_lock(run_dir: str | os.PathLike, enabled: bool = True) -> Iterator[Path | None]:
    """Hold ``run_dir``'s lock for the duration of the block; a lock held by this process nests."""
    if not enabled:
        yield None
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    host = socket.gethostname()
    record = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "process_start": _start_time(os.getpid())}
    for _ in range(3):
        if _create(path, record):
            break
        held = _read_lock(path)
        if held == {}:  # removed meanwhile: try again
            continue
        if held is None:
            raise RunDirectoryError(
                f"{path} exists but cannot be read; if no run is using {run_dir}, delete that file and start again."
            )
        pid, other_host = int(held.get("pid", -1)), held.get("host")
        if pid == os.getpid() and other_host == host:
            yield path  # nested: the outer block releases it
            return
        if other_host == host and not _alive(pid, held.get("process_start")):
            log.warning("Taking over the stale lock of process %d (no longer running, or its pid reused) in %s.", pid, run_dir)
            path.unlink(missing_ok=True)
            continue
        raise RunDirectoryError(
            f"{run_dir} is in use by process {pid} on {other_host} (since {held.get('started', '?')}); wait for it "
            f"to finish, or choose another directory (hydra.run.dir=... or other overrides)."
        )
    else:
        raise RunDirectoryError(f"Could not take the lock {path}; another process keeps replacing it, try again.")
    try:
        yield path
    finally:
        if (_read_lock(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def describe_run(run_dir: Path) -> str | None:
    """A short description of the run held in ``run_dir`` (None if it holds none)."""
    rows = read_csv(run_dir / "metrics.csv")
    if rows:
        last = rows[-1]
        acc = last.get("test_accuracy")
        acc_text = f", test accuracy {100 * float(acc):.2f}%" if acc not in (None, "", "nan") else ""
        return f"a run of {last['epoch']} epochs ({last['step']} steps{acc_text})"
    if (run_dir / "checkpoint.pt").exists():
        return "a run stopped before the end of its first epoch (it has a checkpoint)"
    return None


def check_fresh_start(run_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse to start a new run in ``run_dir`` over an earlier one, unless ``overwrite``; then clear it."""
    run_dir = Path(run_dir)
    held = describe_run(run_dir)
    if held is None:
        return
    if not overwrite:
        raise RunDirectoryError(
            f"{run_dir} already holds {held}; pass resume=true to continue it (trainer.epochs may be raised), "
            f"overwrite=true to replace it, or another name=... to keep both."
        )
    log.warning("overwrite=true: replacing %s in %s.", held, run_dir)
    for name in RUN_OUTPUTS:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
