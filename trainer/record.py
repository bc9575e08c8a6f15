"""The run record: what produced a run (config, code revision, library versions, hardware) and
the metrics log, one JSON line per event, in the run's folder.

It is separate from the loop because the record outlives the run: studies and benchmarks ask
the same questions (which code? which machine?), so they import ``git_revision`` from here
rather than asking git themselves, and every record spells the revision the same way.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaletune.trainer.config import TrainConfig
from scaletune.trainer.errors import naming

if TYPE_CHECKING:
    import torch

METRICS = "metrics.jsonl"


def run_metadata(config: TrainConfig, device: torch.device, dtype: torch.dtype,
                 cpu_kernels: dict[str, str]) -> dict[str, Any]:
    """What produced a run: resolved config, code revision, library versions, hardware (with the
    CPU kernels train() chose: ``matmul`` for float32, ``attention`` for bfloat16, and
    ``dropout``: its masks, kernels.dropout's or torch's under compile)."""
    import torch  # here, so that `scaletune --version` can ask git_revision without torch

    versions = {"python": platform.python_version()}
    for lib in ("scaletune", "torch", "numpy", "tiktoken", "datasets", "pydantic"):
        versions[lib] = installed_version(lib)
    hardware = {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(), "cpu": cpu_name()}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    hardware.update(cpu_kernels)
    return {"config": config.model_dump(mode="json"), "git": git_revision(),
            "versions": versions, "hardware": hardware}


def installed_version(lib: str) -> str | None:
    """The installed version of package ``lib``; None where it is not installed (scaletune's
    folders put on the import path by hand have no package metadata)."""
    try:
        return importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def code_revision() -> str | None:
    """The code this process runs, found once: its git revision (``git_revision``), or outside a
    checkout of scaletune the installed version ("scaletune 0.1.0"); None where neither is known.
    Each trial records its worker's (user attr ``worker_code``): a study resumed after an upgrade
    holds trials of both versions."""
    return code_name(git_revision(), installed_version("scaletune"))


def code_name(revision: str | None, version: str | None) -> str | None:
    """The code of a git ``revision``, else of scaletune's installed ``version``, as
    ``code_revision`` names it (and a study's ``provenance`` records both)."""
    return revision or (f"scaletune {version}" if version else None)


def git_revision() -> str | None:
    """The commit of the code, with '-dirty.<digest of the diff>' when it has uncommitted changes
    to tracked files ('-maybe-dirty' where the diff could not be read); None outside git.

    Only a checkout of scaletune itself counts: an installed copy inside another git repository
    (a virtual environment in the user's project) would otherwise record that project's commit.
    """
    here = Path(__file__).resolve().parent
    try:
        top, rev = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=here,
                                  capture_output=True, text=True, timeout=10,
                                  check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if Path(top).resolve() != here.parent:  # trainer/ sits at the top of scaletune's checkout
        return None
    try:
        # Uncommitted changes to tracked files, named by a digest of the diff: two runs of
        # different changes on one commit record different revisions. The whole tree's diff,
        # in git's own format whatever the user's git config says (diff.relative showed only
        # trainer/'s changes; noprefix, a textconv or an external diff tool changed the digest
        # of the same change, and a slow textconv held up every run).
        diff = subprocess.run(
            ["git", "-c", "core.quotePath=true", "diff", "HEAD", "--no-relative",
             "--no-ext-diff", "--no-textconv", "--no-color", "--binary", "--full-index",
             "--src-prefix=a/", "--dst-prefix=b/", "--", "."],
            cwd=top, capture_output=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return rev + "-maybe-dirty"  # the commit is known; whether the tree was changed is not
    return rev + (f"-dirty.{hashlib.sha256(diff).hexdigest()[:12]}" if diff else "")


def cpu_name() -> str:
    from scaletune.trainer import kernels

    return kernels.cpuinfo_field("model name") or platform.processor()


def log_event(out_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to the run's metrics log with a single write, so a killed run leaves
    whole lines only; a write the disk refuses part of is taken back (the OSError names the
    log). A loss or norm that is not finite (a diverged run) is written as null: NaN is not
    JSON, and other readers (jq, JSON.parse) refused the line."""
    path = out_dir / METRICS
    data = memoryview((json.dumps(_finite({"time": time.time(), **record})) + "\n").encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError as e:  # a full disk: the line is taken back, and the error names the log
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise naming(e, path) from e
    finally:
        os.close(fd)


def _finite(value: Any) -> Any:
    """``value`` with every float that is not finite, at any depth, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def last_checkpoint(out_dir: Path) -> dict[str, Any] | None:
    """The metrics log's record of the run's last checkpoint (step, steps, tokens), or None
    (none logged, as by runs before the record was written)."""
    try:
        lines = (out_dir / METRICS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if '"checkpoint"' in line:
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if record.get("event") == "checkpoint":
                    return record
    return None


def set_aside_log(out_dir: Path) -> Path | None:
    """Rename the metrics log a new run finds in ``out_dir`` (an earlier run's, stopped before its
    first checkpoint) to the first free ``metrics.earlier-N.jsonl``; return that path, or None
    where there was none."""
    return set_aside(out_dir / METRICS) if (out_dir / METRICS).is_file() else None


def set_aside(path: Path) -> Path | None:
    """Rename ``path`` (a file or a folder) to the first free ``earlier_name``; return that
    path, or None where there was nothing."""
    if not path.exists():
        return None
    kept = earlier_name(path)
    path.rename(kept)
    return kept


def earlier_name(path: Path) -> Path:
    """Where a file replaced by a newer one is kept: the first free ``NAME.earlier-N.EXT``
    beside ``path`` (``metrics.earlier-1.jsonl``)."""
    n = 1
    while (kept := path.with_name(f"{path.stem}.earlier-{n}{path.suffix}")).exists():
        n += 1
    return kept


def drop_evals_after(out_dir: Path, step: int) -> None:
    """Remove from the metrics log the evaluations after ``step``: a run resumed from its
    checkpoint at ``step`` evaluates them again, and each would be in the log twice. The log is
    replaced in one rename (a kill leaves the old one or the new one). A last line cut short (a
    write a full disk refused part of, by a version before log_event took it back) goes too: the
    next record would be appended to it, and both lost to a reader of JSON lines."""
    path = out_dir / METRICS
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not _eval_after(line, step)]
    if kept and not kept[-1].endswith("\n"):
        kept.pop()
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(path)


def _eval_after(line: str, step: int) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # not ours to judge: kept
        return False
    return (isinstance(record, dict) and record.get("event") == "eval"
            and isinstance(record.get("step"), int) and record["step"] > step)


# --------------------------------------------------------------------------- times, as read


def fmt_duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 5 min``: a wall time as a person reads it."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def fmt_eta(seconds: float) -> str:
    """``ETA ~3 min``: an estimate, rounded as coarsely as it is known (``ETA <10 s`` below
    that)."""
    if seconds < 10:
        return "ETA <10 s"
    if seconds < 90:
        return f"ETA ~{round(seconds, -1):.0f} s"
    if seconds < 90 * 60:
        return f"ETA ~{round(seconds / 60)} min"
    return f"ETA ~{seconds / 3600:.1f} h"
