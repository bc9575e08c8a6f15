"""The `scaletune` command: thin subcommands over the packages' functions.

Building the parser imports no torch, ray or optuna (each command imports what it needs), so
``scaletune --help`` and ``scaletune validate`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import re
import shlex
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.markup import escape

from scaletune.trainer.console import make_console
from scaletune.trainer.errors import (
    DISK_ERRNOS,
    ConfigError,
    DataError,
    ScaletuneError,
    StorageError,
    StudyStateError,
)
from scaletune.trainer.threads import quiet_waits

if TYPE_CHECKING:
    from scaletune.search.config import StudyConfig

EXIT_BAD_INPUT = 2


LONG_WORD = 200
"""Characters without a space that an error line shows whole; a longer run is cut (_shortened)."""


def _shortened(text: str) -> str:
    """``text`` with each run of more than LONG_WORD characters without a space cut in its
    middle: a 10 KB value (a path, a URL, a tokenizer's name) was echoed whole by the errors
    that quote it, where others cut it; the words around it stay."""
    return re.sub(rf"\S{{{LONG_WORD + 1},}}",
                  lambda m: f"{m.group()[:120]}...{m.group()[-60:]}", text)


def _errors(e: ScaletuneError) -> int:
    """Print any error of ours as its lines alone (no traceback), to standard error, so that
    what a command prints for scripts (``best --json > file``) never holds one; exit code 2."""
    console = make_console(stderr=True)
    from scaletune.search.urls import mask_url

    lines = [_shortened(line) for line in getattr(e, "errors", None) or [str(e)]]
    source = getattr(e, "source", None)  # the file, or the option, at fault; none: the command
    if isinstance(source, str):  # a storage URL given where a file goes: its password masked
        if lines == ["file not found"] and re.match(r"[A-Za-z][\w+.-]+:/", source):  # not C:/
            lines = ["file not found; a storage's URL goes after --storage (`scaletune studies "
                     "--storage URL`, `scaletune show NAME --storage URL`)"]
        source = _shortened(mask_url(source))
    named = len(lines) == 1 and bool(source) and lines[0].startswith(f"{source}: ")
    if named or isinstance(e, (StudyStateError, StorageError)):
        # The file is right; its study cannot give what is asked, or its storage failed (a
        # stop as the study ran is no list of errors in a file). A line that names its source
        # already ("storage: ... is not a storage URL") is said as it is: one error of an
        # option that names it is that line, not "1 error(s) in storage:" above it.
        for line in lines:
            said = line if line.startswith(f"{source}: ") else f"{source}: {line}"
            console.print(said, highlight=False, markup=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    if not source and len(lines) == 1:  # an option's or the command's own: one line
        console.print(f"[red]error:[/] {escape(lines[0])}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    where = f" in {source}" if source else ""
    console.print(f"[red]{len(lines)} error(s)[/]{where}:", highlight=False, soft_wrap=True)
    for line in lines:
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    return EXIT_BAD_INPUT


def _quiet_optuna() -> None:
    """Optuna's INFO lines ("A new study created in RDB ...") say nothing our output does not."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    start = time.monotonic()  # the run's time includes importing torch and Ray
    from scaletune.search.config import load_study
    from scaletune.search.manage import with_options

    _repeats_counted(args.repeat_best)
    in_file = load_study(args.study)
    cfg = with_options(in_file, n_trials=args.n_trials, address=args.address,
                       max_concurrent=args.max_concurrent, storage=args.storage)
    _quiet_optuna()
    if args.dry_run:
        from scaletune.search.config import job_server_problem
        from scaletune.search.manage import print_plan

        if not args.detach and (problem := job_server_problem(cfg)):  # as the run refuses it
            raise cfg.refusal([problem])
        url = None
        if args.detach:  # refused before the plan, as the run refuses it (the plan came first)
            from scaletune.search.jobs import check_storage_option, job_server
            from scaletune.search.storage import mask_url

            url = job_server(cfg, args.address)
            check_storage_option(args.storage)
        print_plan(cfg, console, repeat_best=args.repeat_best)
        if url is not None:
            console.print(f"detach    the run would submit it as a Ray job to {mask_url(url)} "
                          "(not reached by this dry run): its driver would run on the cluster, and "
                          "the command return", markup=False, highlight=False)
        return 0
    if args.detach:
        from scaletune.search.jobs import job_server, submit

        options = {"--n-trials": args.n_trials, "--max-concurrent": args.max_concurrent,
                   "--storage": args.storage, "--repeat-best": args.repeat_best or None}
        url = job_server(cfg, args.address)  # an --address that is no job server is named
        # The commands that follow the job name its server unless the study file does.
        follow = None if url == in_file.workers.job_server else url
        return submit(cfg, args.study, url, options, console, follow_address=follow)
    from scaletune.search.progress import print_run_summary
    from scaletune.search.runner import run_study

    with _own_ray():
        try:
            study = run_study(cfg, console, repeat_best=args.repeat_best, summary=False)
        except KeyboardInterrupt as e:
            if not getattr(e, "said", False):
                raise  # main's line: interrupted outside the trials, where nothing was said
            # The shell's convention: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
            return 128 + e.signum
        summary = print_run_summary(console, study, cfg, args.study, time.monotonic() - start,
                                    storage=args.storage)
    return 0 if summary["best"] is not None else 1


@contextlib.contextmanager
def _own_ray() -> Iterator[None]:
    """Shut down the Ray cluster that the block starts (a local study's own) when the block
    ends, however it ends, with SIGINT and SIGTERM held off meanwhile.

    Left to Ray's exit hook, the shutdown came after the study's summary and a 0.5-s sleep for
    messages a study does not show; a second Ctrl-C landing in it printed a KeyboardInterrupt
    traceback and left Ray's dashboard and runtime-env agents running, orphaned.
    """
    import threading

    import ray

    ours = not ray.is_initialized()
    try:
        yield
    finally:
        if ours and ray.is_initialized():
            main_thread = threading.current_thread() is threading.main_thread()
            held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)
                    } if main_thread else {}
            try:
                ray.shutdown()
            finally:
                for s, handler in held.items():
                    signal.signal(s, handler)


def _repeats_counted(n: int) -> None:
    """--repeat-best N of `run` and `ladder`: a count of repeats. An error of the command line,
    as --n-trials' is (it was said as one in the study file)."""
    from scaletune.search.config import MAX_TRIALS

    if not 0 <= n <= MAX_TRIALS:
        raise ConfigError("the command line", [
            f"--repeat-best: must be from 0 to {MAX_TRIALS:,} repeats (got {n:,})"])


def cmd_ladder(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.ladder import checked, load_ladder, print_plan

    ladder = load_ladder(args.ladder)
    _quiet_optuna()
    _repeats_counted(args.repeat_best)
    if args.dry_run:  # what the run refuses and notes (run_ladder), with its plan
        print_plan(ladder, console, checked(ladder), args.repeat_best)
        return 0
    from scaletune.search.ladder import print_ladder_summary, run_ladder

    start = time.monotonic()
    with _own_ray():
        try:
            study = run_ladder(ladder, console, repeat_best=args.repeat_best, summary=False)
        except KeyboardInterrupt as e:
            if not getattr(e, "said", False):
                raise  # before a rung's trials, or between two rungs: main's line says it
            return 128 + e.signum
    summary = print_ladder_summary(ladder, study, console, time.monotonic() - start)
    return 0 if summary["best"] is not None else 1


def cmd_jobs(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.config import load_study
    from scaletune.search.jobs import job_server, list_jobs
    from scaletune.search.storage import mask_url
    from scaletune.search.studies import looks_like_a_name

    try:
        cfg = load_study(args.study) if args.study else None
    except ConfigError as e:  # a study's name, as `jobs`, `logs` and `stop` take it
        if e.errors != ["file not found"] or not looks_like_a_name(args.study):
            raise
        cfg = None
    name = cfg.name if cfg else args.study
    storage = args.storage or (cfg.storage_url if cfg else None)
    return list_jobs(job_server(cfg, args.address), name, console,
                     mask_url(storage) if storage else None)


def cmd_logs(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.jobs import print_logs

    return print_logs(_job_server(args), args.target, args.follow, console, args.storage)


def cmd_stop(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.jobs import stop

    return stop(_job_server(args), args.target, console, args.storage)


def _job_server(args: argparse.Namespace) -> str:
    """The job server of a command on a study file or a job id (a job id needs --address or
    RAY_ADDRESS)."""
    from scaletune.search.config import load_study
    from scaletune.search.jobs import is_job_id, job_server
    from scaletune.search.studies import looks_like_a_name

    if is_job_id(args.target):
        return job_server(None, args.address)
    try:
        cfg = load_study(args.target)
    except ConfigError as e:
        if e.errors != ["file not found"]:
            raise
        if looks_like_a_name(args.target):  # a study's name, as `scaletune jobs` lists it
            return job_server(None, args.address)
        raise ConfigError(args.target, [
            "no such study file, and not a job's id (scaletune-NAME-HEX, as `scaletune run "
            "--detach` and `scaletune jobs` print it, or raysubmit_...) nor a study's name: "
            "give the study file, the study's name or the job's id"]) from None
    return job_server(cfg, args.address)


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.manage import validate_file

    status = 0
    for path in args.studies:
        try:
            kind, notes = validate_file(path, storage=args.storage)
        except ConfigError as e:  # the next files are checked all the same
            status = _errors(e)
            for note in getattr(e, "notes", []):  # a valid file its storage's error is of
                console.print(f"  note: {note}", style="yellow", highlight=False, markup=False)
            continue
        console.print(f"{path}: ok{f' ({kind})' if kind != 'study' else ''}", highlight=False)
        for note in notes:
            console.print(f"  note: {note}", style="yellow", highlight=False, markup=False)
    return status


def cmd_priors(args: argparse.Namespace, console: Console) -> int:
    from scaletune.heuristics.priors import print_priors
    from scaletune.search.ladder import study_or_target
    from scaletune.search.plan import memory_problem, optimizer_note
    from scaletune.search.space import build_space, planning_priors, searched_ranges, space_problems
    from scaletune.trainer.data import known_vocab_size

    # From the model, the budget and the tokenizer's name: planning a study downloads and
    # tokenizes nothing (`scaletune run` prepares the data; only dropout's epochs need it).
    cfg = study_or_target(args.study)
    if cfg.priors.laws == "fitted" and not Path(cfg.priors.fitted_file or "").is_file():
        # A ladder's target has priors once two rungs have finished and its laws are written.
        if _ladder_file(args.study):
            from scaletune.search.ladder import load_ladder

            study = Path(args.study).parent / load_ladder(args.study).cfg.target.study
            raise ConfigError(args.study, [
                f"laws_file: {cfg.priors.fitted_file} does not exist yet: the target's priors "
                f"come from the laws `scaletune ladder {args.study}` fits once two rungs have "
                f"finished; the published laws' priors at the target: `scaletune priors "
                f"{study}`"])
        raise ConfigError(args.study, [f"priors.fitted_file: file not found: "
                                       f"{cfg.priors.fitted_file!r} (`scaletune fit` or "
                                       "`scaletune ladder` writes it)"])
    priors = planning_priors(cfg)
    try:  # the study's own ranges beside the laws' (a space the priors leave empty: without)
        dims, fixed = build_space(cfg, priors)
    except ConfigError as e:
        searched, refused = None, e.errors
    else:
        searched, refused = searched_ranges(dims, fixed), space_problems(cfg, dims, fixed)
    # A model too big for memory, as validate finds it (the data's size needs the data read).
    vocab = cfg.model.vocab_size or known_vocab_size(cfg.data.tokenizer) or 256
    if too_big := memory_problem(cfg, vocab):
        refused = [*refused, too_big]
    print_priors(priors, json_output=args.json, console=console, searched=searched)
    # A study no trial of which could train (a budget below one step, say) got its priors
    # printed as if it could; said on stderr, which --json leaves clean.
    err = make_console(stderr=True)
    for problem in refused:
        err.print(f"note: `scaletune run` refuses this study: {problem}", highlight=False,
                  markup=False)
    if note := optimizer_note(cfg):  # sgd or muon: the table's AdamW terms do not hold
        err.print(f"note: {note}", highlight=False, markup=False)
    return 0


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.dashboard import serve

    _quiet_optuna()
    return serve(args.study, host=args.host, port=args.port, allow_writes=args.allow_writes,
                 console=console, storage=args.storage)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from scaletune.trainer.cli import train_main

    # --node-rank alone too: launch's checks refuse it on one node (it was ignored).
    if (args.nproc_per_node != 1 or args.nnodes != 1 or args.rdzv_endpoint is not None
            or args.node_rank != 0):
        from scaletune.trainer.cli import launch

        return launch(args.config, args.nproc_per_node, resume=args.resume,
                      overwrite=args.overwrite, nnodes=args.nnodes, node_rank=args.node_rank,
                      rdzv_endpoint=args.rdzv_endpoint)
    return train_main(args.config, resume=args.resume, overwrite=args.overwrite)


def cmd_fit(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.fit import (
        fit_from_studies,
        fitted_as,
        laws_writable,
        print_laws,
        save_laws,
    )

    _quiet_optuna()
    studies, ladders = [], []
    for p in args.studies:
        if _ladder_file(p):
            # Its rungs' studies, fitted as the ladder fits them (its scale, its near_best): it
            # was taken for its target alone, one study at one scale, and a fit of it "needs
            # studies at two or more".
            from scaletune.search.fit import ladder_rungs

            if args.storage is not None:
                raise ConfigError("--storage", [
                    f"--storage: {p} is a ladder file, whose rungs are in the storages its "
                    "files name; --storage is for studies given by file or name"])
            ran, ladder = ladder_rungs(p, args.by, alone=len(args.studies) == 1)
            console.print(f"{p}: a ladder file: its {len(ran)} rung(s) that have run, fitted "
                          f"along {ladder.cfg.scale} as `scaletune ladder {p}` fits them into "
                          f"{ladder.laws_file}", highlight=False, markup=False, soft_wrap=True)
            studies += ran
            ladders.append(ladder)
        else:
            studies.append(_study(argparse.Namespace(study=p, storage=args.storage)))
    scale_kind, near = fitted_as(ladders, args.by)
    output = _file_to_write(args.output, "laws.json")
    laws_writable(output, f"-o {output}")
    laws = fit_from_studies(studies, scale_kind=scale_kind, near=near)
    try:
        earlier = output.read_bytes()
    except OSError:
        earlier = None
    save_laws(laws, output, f"-o {output}")
    replaced = ""
    if earlier is not None and earlier != output.read_bytes():
        # Studies seeded from the file (priors.fitted_file, a ladder's laws_file) take the new
        # laws at their next launch, and export its exponents: the earlier ones are kept.
        from scaletune.trainer.record import earlier_name

        kept = earlier_name(output)
        kept.write_bytes(earlier)
        replaced = f" (it replaces the laws that were there, kept as {kept})"
    scale = "number of tokens per trial" if laws.scale_kind == "tokens" else "model size"
    console.print(f"fitted on {len(studies)} studies; below, a rung is the studies at one "
                  f"{scale} (a scale ladder's rung is one study)", highlight=False, markup=False)
    print_laws(laws, console)
    # fitted_file is read from the folder of the study file that names it: the studies' own,
    # where they share one, else the whole path.
    folders = {Path(p).resolve().parent for p in args.studies if Path(p).is_file()}
    named, where = str(output.resolve()), ""
    if len(folders) == 1:
        named, where = os.path.relpath(named, *folders), " (a path from the studies' folder)"
    if not re.fullmatch(r"[\w./~-]+", named):  # quoted, for a name that YAML reads otherwise
        named = json.dumps(named, ensure_ascii=False)  # (', ', '#', braces, a leading '&')
    console.print(f"wrote {args.output}{replaced}; use it with  priors: {{laws: fitted, fitted_file: "
                  f"{named}}}{where}", highlight=False, markup=False, soft_wrap=True)
    return 0


def _tokens(text: str) -> int:
    """A token count as argparse sees it: 2e9, 2_000_000_000, 2000000000 or 2B."""
    from scaletune.trainer.config import shown_value, whole_count

    if (value := whole_count(text)) is None:
        raise argparse.ArgumentTypeError(f"expected a whole number of tokens >= 1, got "
                                         f"{shown_value(text)}")
    return value


def _whole(text: str) -> int:
    """A whole number as argparse sees it, written as a study file takes it: 16, 1e3, 1_000
    (``--n-trials 1e1`` was "invalid int value")."""
    from scaletune.trainer.config import parse_number, shown_value

    try:
        return int(text)  # exactly, digits and underscores (a float rounds 99999999999999999999)
    except ValueError:
        value = parse_number(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise argparse.ArgumentTypeError(f"expected a whole number (16, 1e3 or 1_000), got "
                                         f"{shown_value(text)}")
    return value


def _at_least_one(text: str) -> int:
    """A count of 1 or more, as argparse sees it."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _file_to_write(output: str, example: str) -> Path:
    """-o OUTPUT as the file a command writes: one that ends in a slash names a folder, and a
    folder not there yet was written as a file of its name (-o newdir/ wrote the file newdir);
    one that is there is the command's own refusal."""
    if output.endswith(("/", os.sep)) and not Path(output).is_dir():
        raise ConfigError(f"-o {output}", [f"names a folder (it ends in /), and there is none: "
                                           f"give the file to write, e.g. -o {output}{example}"])
    return Path(output)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.export import export_study, parse_model_overrides, summary_lines

    cfg = _study(args)
    _quiet_optuna()
    output = _file_to_write(args.output, "final.yaml")
    with _output_errors(output.parent, f"-o {output}", "the training config"):
        done = export_study(
            cfg, args.output, source=args.study, trial=args.trial, tokens=args.tokens,
            model=parse_model_overrides(args.model), max_batch_size=args.max_batch_size,
        )
    for line in summary_lines(done.config.provenance or {}):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    replaced = " (it replaces the training config that was there)" if done.replaced else ""
    console.print(f"wrote {done.path}{replaced}", highlight=False, markup=False)
    # A file exported again to the same name trains in the same out_dir, where the run of the
    # earlier export may be: train refuses it, which the commands below did not say.
    from scaletune.search.manage import out_dir_note

    for note in out_dir_note(done.config):
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    for line in run_commands(str(done.path), done.config.batch_size):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


def run_commands(path: str, batch_size: int | None = None) -> list[str]:
    """How to train an exported file: one process, the GPUs of one machine, several machines.
    ``batch_size``: the file's, which the processes share in equal parts (a batch of 1 cannot
    be shared: its file was told to run on N GPUs, which the launch then refused)."""
    train = f"scaletune train {shlex.quote(path)}"
    if batch_size == 1:
        return [f"train it with:  {train}",
                "  on several GPUs: batch_size 1 cannot be shared between processes; give a "
                "larger batch_size in the file first"]
    divides = f"   # N divides batch_size {batch_size}" if batch_size else ""
    return [
        f"train it with:  {train}",
        f"  on N GPUs:    {train} --nproc-per-node N{divides}",
        "  on M machines, on each (R = 0..M-1; out_dir on a file system they share"
        + (f"; N x M divides batch_size {batch_size}):" if batch_size else "):"),
        f"                {train} --nproc-per-node N --nnodes M --node-rank R "
        "--rdzv-endpoint NODE0:29500",
        "  parallel: fsdp in the file shards a model that does not fit one GPU",
    ]


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.report import make_report, report_folder_problem

    cfg = _study(args)
    _quiet_optuna()
    if args.output == "":  # `-o ""` wrote over the default report without a word
        raise ConfigError("-o", ["an empty path: give the report's folder, or leave -o out for "
                                 f"{cfg.folder / 'report'}"])
    out = Path(args.output or cfg.folder / "report")
    if problem := report_folder_problem(out, "-o report"):
        raise ConfigError(f"-o {out}", [problem])
    with _output_errors(out, f"-o {out}", "the report"):
        if _ladder_file(args.study):
            from scaletune.search.ladder import load_ladder
            from scaletune.search.ladder_report import make_ladder_report

            make_ladder_report(load_ladder(args.study), out, args.study, console, target=cfg)
        else:
            make_report(cfg, out, source=args.study, console=console)
    return 0


@contextlib.contextmanager
def _output_errors(folder: Path, where: str, what: str) -> Iterator[None]:
    """An OSError on ``folder``, a folder above it or a file in it inside the block is the
    output's: a ConfigError naming ``where`` in one line, not a traceback. Others (a file deeper
    down, such as a study's own files below the working folder) pass."""
    try:
        yield
    except OSError as e:
        if not e.filename:
            # A write into a file already open (a full disk): it names no file.
            if e.errno not in DISK_ERRNOS:
                raise
            raise ConfigError(where, [f"cannot write {what} there: {e.strerror or e} "
                                      f"({folder.resolve()}): free space there, or give a path "
                                      "on another disk"]) from None
        failed, mine = Path(e.filename).resolve(), folder.resolve()
        if not (failed == mine or failed.parent == mine or failed in mine.parents):
            raise
        raise ConfigError(where, [f"cannot write {what} there: {e.strerror or e} ({failed}): "
                                  "give a path in a writable folder"]) from None


def _study(args: argparse.Namespace) -> StudyConfig:
    """The study file of a command, with its storage replaced by ``--storage`` where given; for a
    ladder file, its target study."""
    from scaletune.search.ladder import study_or_target
    from scaletune.search.manage import with_options
    from scaletune.search.studies import looks_like_a_name, study_by_name

    if looks_like_a_name(args.study):  # a name, as `scaletune studies` lists them
        return study_by_name(args.study, args.storage)
    return with_options(study_or_target(args.study), storage=args.storage)


def _ladder_file(arg: str) -> bool:
    """Is ``arg`` a ladder file (not a study file, nor a study's name)?"""
    from scaletune.search.config import is_ladder

    return Path(arg).is_file() and is_ladder(arg)


def cmd_studies(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.ladder import study_or_target
    from scaletune.search.manage import list_studies

    _quiet_optuna()
    if args.storage is None and args.study is None:
        # The default storage of the study files in this folder.
        here = Path("runs") / "studies.db"
        if not here.is_file():
            make_console(stderr=True).print(
                f"scaletune studies: no {here} in this folder, where its study files keep their "
                "studies by default: give a study file (the studies in its storage) or "
                "--storage URL", highlight=False, markup=False)
            return EXIT_BAD_INPUT
        from scaletune.trainer.config import sqlite_url

        args.storage = sqlite_url(here.resolve())
    url = args.storage if args.storage is not None else study_or_target(args.study).storage_url
    return list_studies(url, console)


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.manage import show_study

    cfg = _study(args)
    _quiet_optuna()
    return show_study(cfg, console)


def cmd_best(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.manage import print_best

    cfg = _study(args)
    _quiet_optuna()
    return print_best(cfg, args.json, console)


def cmd_delete(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.ladder import load_ladder, stored_study
    from scaletune.search.manage import delete_study

    cfg = _study(args)
    _quiet_optuna()
    code = delete_study(cfg, args.yes, console)
    if code == 0 and _ladder_file(args.study):
        kept = [r.cfg.name for r in load_ladder(args.study).rungs if stored_study(r.cfg)]
        if kept:
            console.print(f"note: the ladder's target only: its {len(kept)} rung studies stay in "
                          f"the storage ({', '.join(kept)}), and `scaletune ladder "
                          f"{args.study}` runs the target again from their laws", style="yellow",
                          highlight=False, markup=False, soft_wrap=True)
    return code


class _Version(argparse.Action):
    """``--version``: the installed version and the code revision (git), looked up only when
    asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_line())
        parser.exit()


def version_line() -> str:
    """``scaletune 0.1.0 (revision 0123abcd...)``; the revision is left out outside git."""
    from importlib.metadata import version

    from scaletune.trainer.record import git_revision

    revision = git_revision()
    return f"scaletune {version('scaletune')}" + (f" (revision {revision})" if revision else "")


def _storage_url(url: str) -> str:
    """A ``--storage`` with a relative SQLite path, made absolute against this folder, where it
    is made: echoed as given, the summary's next commands broke from any other folder."""
    from scaletune.search.config import sqlite_beside

    return sqlite_beside(url, Path.cwd())


def _stored_study_args(p: argparse.ArgumentParser, func: Any) -> None:
    """The arguments of a command on a study that has run: its file, and the storage where
    `run --storage` put it elsewhere."""
    p.add_argument("study", help="study YAML (or ladder file); or a study's name, as `scaletune "
                   "studies` lists them, looked up in --storage or runs/studies.db here")
    p.add_argument("--storage", metavar="URL", type=_storage_url,
                   help="the storage the study ran on, where `run --storage` gave another")
    p.set_defaults(func=func)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors suggest the command or option a misspelt one meant
    (``scaletune rnu``, ``run --dryrun``), as the study file's unknown keys do."""

    def error(self, message: str) -> NoReturn:
        super().error(_shortened(message) + _did_you_mean(self, message))

    def _get_option_tuples(self, option_string: str) -> list[tuple]:
        # A prefix of two spellings of one option (--nproc: --nproc-per-node, --nproc_per_node)
        # is that option; argparse (3.11) refused it as ambiguous.
        kept: dict[int, tuple] = {}
        for match in super()._get_option_tuples(option_string):
            kept.setdefault(id(match[0]), match)
        return list(kept.values())


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """``; did you mean run?`` for argparse's error ``message``, or '' where nothing is close."""
    import difflib

    from scaletune.trainer.config import closest

    close = None
    if chosen := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
        # Commands are short: 'rnu' is 0.67 of the way to 'run', below closest's 0.7.
        choices = re.findall(r"'([^']*)'", chosen.group(2))
        close = next(iter(difflib.get_close_matches(chosen.group(1), choices, n=1, cutoff=0.6)),
                     None)
    elif unknown := re.match(r"unrecognized arguments: (.*)", message):
        if "--version" in unknown.group(1).split() and parser.prog != "scaletune":
            return "; --version goes before the command: scaletune --version"
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        for word in unknown.group(1).split():
            if word.startswith("--") and (close := closest(word.partition("=")[0], options)):
                break
    return f"; did you mean {close}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scaletune",
        description="Hyperparameter search for GPT pretraining, seeded by scaling laws.",
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run or resume a study")
    p.add_argument("study", help="study YAML")
    p.add_argument("--n-trials", type=_whole, metavar="N",
                   help="the study's n_trials for this launch: finished trials it should have in "
                        "all (a resumed study runs the missing ones)")
    p.add_argument("--address", metavar="ADDR",
                   help="workers.address: 'auto' or ray://host:10001 joins a cluster, 'local' "
                        "starts Ray on this machine, http://HEAD:8265 is a cluster's job server "
                        "(with --detach)")
    p.add_argument("--max-concurrent", type=_whole, metavar="N",
                   help="workers.max_concurrent: trials running at once at most")
    p.add_argument("--storage", metavar="URL", type=_storage_url,
                   help="storage: the Optuna storage URL (sqlite:///..., postgresql://...)")
    p.add_argument("--repeat-best", type=_whole, metavar="N", default=0,
                   help="queue N repeats of the best trial with training seeds its config has not "
                        "used and run them (never pruned; on top of n_trials): the noise between "
                        "seeds, shown by `scaletune report`, sets the predicted pruner's floor")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (priors, search space, first trial, sampler, pruner, "
                        "workers, storage, budget) and start nothing")
    p.add_argument("--detach", action="store_true",
                   help="hand the driver to the Ray cluster whose job server workers.address "
                        "(or --address) gives, http://HEAD:8265, and return; the study file, "
                        "its data and storage must be at the same path there")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ladder", help="run a scale ladder: studies at smaller scales cheapest "
                                      "first, laws fitted after each, then the target study "
                                      "seeded from them (resumable)")
    p.add_argument("ladder", help="ladder YAML (a target study file and its rungs)")
    p.add_argument("--repeat-best", type=_whole, metavar="N", default=0,
                   help="as run's: once the target study has run, queue N repeats of its best "
                        "trial with other training seeds and run them")
    p.add_argument("--dry-run", action="store_true",
                   help="print the rungs in the order they run, with their state, and start nothing")
    p.set_defaults(func=cmd_ladder)

    job_server = ("the Ray cluster's job server, http://HEAD:8265 (default the study's "
                  "workers.address, else RAY_API_SERVER_ADDRESS or RAY_ADDRESS)")
    p = sub.add_parser("jobs", help="studies run as Ray jobs (run --detach): status and progress")
    job_storage = ("the storage the study runs on, where `run --detach --storage` gave another "
                   "(a study is its name in its storage)")
    p.add_argument("study", nargs="?", metavar="STUDY|NAME",
                   help="study YAML or a study's name: its jobs only")
    p.add_argument("--address", metavar="URL", help=job_server)
    p.add_argument("--storage", metavar="URL", type=_storage_url, help=job_storage)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("logs", help="the driver's output of a study run as a Ray job")
    p.add_argument("target", metavar="STUDY|NAME|JOB",
                   help="study YAML or a study's name (its latest job), or a job id")
    p.add_argument("--address", metavar="URL", help=job_server)
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing until the job ends (Ctrl-C leaves it running)")
    p.add_argument("--storage", metavar="URL", type=_storage_url, help=job_storage)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", help="stop a study run as a Ray job; run --detach resumes it")
    p.add_argument("target", metavar="STUDY|NAME|JOB",
                   help="study YAML or a study's name (its running job), or a job id")
    p.add_argument("--address", metavar="URL", help=job_server)
    p.add_argument("--storage", metavar="URL", type=_storage_url, help=job_storage)
    p.set_defaults(func=cmd_stop)

    # "list" is a parser of its own, not an alias, so that its usage line says "scaletune list".
    for name, kwargs in (("studies", {"help": "list the studies in a storage (by default "
                                              "runs/studies.db in this folder); also: list"}),
                         ("list", {})):
        p = sub.add_parser(name, description="The studies in a storage (by default "
                           "runs/studies.db in this folder).", **kwargs)
        where = p.add_mutually_exclusive_group()
        where.add_argument("study", nargs="?", help="study YAML (or ladder file): the studies in "
                           "its storage")
        where.add_argument("--storage", metavar="URL", type=_storage_url, help="a storage URL")
        p.set_defaults(func=cmd_studies)

    p = sub.add_parser("show", help="one study: trials by state, best trial, config, priors, "
                                    "driver")
    _stored_study_args(p, cmd_show)

    p = sub.add_parser("best", help="the best trial's parameters as name=value lines")
    _stored_study_args(p, cmd_best)
    p.add_argument("--json", action="store_true", help="one JSON object instead")

    p = sub.add_parser("delete", help="delete a study from its storage, after a confirmation")
    _stored_study_args(p, cmd_delete)
    p.add_argument("--yes", action="store_true",
                   help="delete without asking (needed where stdin is not a terminal)")

    p = sub.add_parser("validate", help="check study (or training) files; every error at once")
    p.add_argument("studies", nargs="+", help="study YAML files, ladder files or training "
                   "files (final.yaml)")
    p.add_argument("--storage", metavar="URL", type=_storage_url,
                   help="check the study files with this storage, as `run --storage URL` runs "
                        "them (a PostgreSQL login is tried, read-only)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("priors", help="print the scaling-law priors of a study and their sources")
    p.add_argument("study", help="study YAML (or ladder file: its target's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_priors)

    from scaletune.search.dashboard import tcp_port

    p = sub.add_parser("dashboard", help="serve optuna-dashboard for a study's storage and every "
                                         "study in it (read-only)")
    p.add_argument("study", nargs="?", help="study YAML (or ladder file), or a study's name as "
                   "`scaletune studies` lists them (or none, with --storage)")
    p.add_argument("--storage", metavar="URL", type=_storage_url,
                   help="the storage to serve: where `run --storage` put the study, or any "
                        "storage, with no study file")
    p.set_defaults(func=cmd_dashboard)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); anyone who can reach it reads "
                        "every trial, config and user attr of every study in the storage, with "
                        "no login")
    p.add_argument("--port", type=tcp_port, default=8080, help="port 1-65535 (default 8080)")
    p.add_argument("--allow-writes", action="store_true",
                   help="let the dashboard change the storage: notes, rename and delete studies, "
                        "tell trials, edit user attrs (default read-only)")

    p = sub.add_parser("train", help="one training run from a training YAML")
    p.add_argument("config",
                   help="training YAML (its fields: TrainConfig in scaletune.trainer.config)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="train from scratch even if out_dir already holds a run's checkpoint")
    p.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (torchrun; one per GPU); "
                        "the config's parallel: ddp or fsdp says how they split the work")
    p.add_argument("--nnodes", type=int, default=1, metavar="N",
                   help="machines in the run; run the same command on each, with its own "
                        "--node-rank")
    p.add_argument("--node-rank", "--node_rank", type=int, default=0, metavar="R",
                   help="this machine's number, 0 to N-1; node 0 holds rank 0, which logs and "
                        "writes the checkpoints")
    p.add_argument("--rdzv-endpoint", "--rdzv_endpoint", metavar="HOST:PORT",
                   help="where the machines meet: node 0's address and a free port, the same "
                        "on every node (with --nnodes above 1)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("fit", help="fit lr, tau and batch-size laws to finished studies")
    p.add_argument("studies", nargs="+", help="study YAML files at two or more scales, or "
                   "studies' names as `scaletune studies` lists them (a ladder's rungs)")
    p.add_argument("--by", choices=["tokens", "params"],
                   help="the scale the laws are a function of (default tokens per trial; a "
                        "ladder file's own scale for its rungs)")
    p.add_argument("-o", "--output", required=True, help="JSON file to write")
    p.add_argument("--storage", metavar="URL", type=_storage_url,
                   help="the storage the studies ran on, where `run --storage` gave another")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("export", help="write the best trial as the training config of a final run")
    _stored_study_args(p, cmd_export)
    p.add_argument("--trial", type=int, help="export this trial number instead of the best")
    p.add_argument("--tokens", type=_tokens,
                   help="train this many tokens (e.g. 2e9; default the study's "
                        "tokens_per_trial); lr, batch and weight decay move by the transfer "
                        "rules the file's header lists")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="change a model field, e.g. --model n_embd=512 --model n_layer=12")
    p.add_argument("--max-batch-size", type=_at_least_one, metavar="N",
                   help="cap on the transferred batch (sequences); default none")
    p.add_argument("-o", "--output", required=True, help="training YAML to write")

    p = sub.add_parser("report", help="trials table, plots and compute summary of a study")
    _stored_study_args(p, cmd_report)
    p.add_argument("-o", "--output", help="folder to write (default <study folder>/report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    for word in sys.argv[1:] if argv is None else argv:  # the options before the command
        if not word.startswith("-"):
            break
        # One argparse took as the command's, then said only "required: command".
        if word != "-h" and not (len(word) > 2 and any(
                option.startswith(word.partition("=")[0]) for option in ("--help", "--version"))):
            from scaletune.search.storage import mask_word

            parser.error(f"unrecognized arguments: {mask_word(word)}")
    args, extra = parser.parse_known_args(argv)
    # What is wrong with the command's arguments is said with its own usage, not the list of
    # commands.
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.command]
    if extra:
        from scaletune.search.storage import mask_word

        # A storage URL given to a command that takes none (or to a misspelt --storage=): its
        # password is not echoed.
        said = " ".join(map(mask_word, extra))
        command.error(f"unrecognized arguments: {said}")
    for dest in ("study", "studies", "config"):  # a path "" reads as the current folder
        given = getattr(args, dest, None)
        if given == "" or (isinstance(given, list) and "" in given):
            named = any(a.dest == dest and "name" in (a.help or "") for a in command._actions)
            command.error(f"argument {dest}: an empty string (\"\"), where the command reads "
                          + ("a file's path or a study's name" if named else "a file's path"))
    console = make_console()
    try:
        return args.func(args, console)
    except KeyboardInterrupt as e:
        # Ctrl-C where no command handles it (a study's start-up, a report), or a second one
        # while a study stops its trials, which quits at once: a line, not a traceback.
        recovered = ("; the next run of the same command recovers any trial left running"
                     if args.command in ("run", "ladder")
                     and not getattr(args, "dry_run", False) else "")  # a dry run runs none
        print(f"scaletune {args.command}: interrupted{recovered}", file=sys.stderr, flush=True)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except DataError as e:  # the data of the file the command was given
        study = getattr(args, "study", None)
        return _errors(ConfigError(study, [str(e)]) if isinstance(study, str) else e)
    except ScaletuneError as e:
        return _errors(e)
    except OSError as e:
        if e.errno in DISK_ERRNOS and _output_refused():
            print(f"scaletune {args.command}: cannot write its output: {e.strerror} (its "
                  "standard output is a full disk, or a device that takes nothing)",
                  file=sys.stderr, flush=True)
            return 1
        if e.errno != errno.ENAMETOOLONG:
            raise
        # A path of the study file (study_dir, priors.fitted_file) longer than the file system
        # takes, met wherever it is first looked at: a traceback there. (_errors cuts it.)
        study = getattr(args, "study", None)
        return _errors(ConfigError(study if isinstance(study, str) else None, [
            f"a path is longer than the file system allows ({e.strerror}): {e.filename}"]))


def _output_refused() -> bool:
    """Whether standard output refuses what was written to it (``> /dev/full``, a full disk):
    where it does, it is pointed at /dev/null, so that the interpreter's last flush of it says
    nothing more (it was a 29-line traceback from rich, then Python's 'Exception ignored')."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a file (a notebook's, a test's capture)
        return False
    try:
        os.write(fd, b"")  # a device that takes nothing refuses even this
        refused = (stat.S_ISREG(os.fstat(fd).st_mode)  # a file on a full disk
                   and os.fstatvfs(fd).f_bavail == 0)
    except OSError:
        refused = True
    if refused:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return refused


def mask_command_line() -> None:
    """This process's command line, as ``ps`` and Ray's dashboard (its node view lists a
    driver's command line to whoever reaches the cluster) read it, with any password of a URL in
    it masked: ``run STUDY.yaml --storage postgresql://user:PW@host/db`` showed PW there for as
    long as the study ran. Only the first moments of the process, before this runs, show it."""
    from scaletune.search.urls import mask_word  # light: no SQLAlchemy yet

    try:
        with open("/proc/self/cmdline", "rb") as f:  # Linux: the interpreter's words too
            # A title is shown, not parsed: a name that is not UTF-8 shows as U+FFFD (kept as
            # surrogates, setproctitle could not encode it, and the command ended in a traceback).
            words = [w.decode(errors="replace") for w in f.read().split(b"\0")[:-1]]
    except OSError:
        words = [w.encode(errors="surrogateescape").decode(errors="replace")
                 for w in (sys.executable, *sys.argv)]
    masked = [mask_word(w) for w in words]
    if masked != words:
        with contextlib.suppress(ImportError):
            import setproctitle

            setproctitle.setproctitle(" ".join(masked))


def entry() -> int:
    """The ``scaletune`` command: ``main``, then a Ctrl-C (or SIGTERM) while the interpreter
    exits ends the process at once, as the signal does by default. The exit joins the threads a
    study leaves (the storage thread's last write), and a second, impatient Ctrl-C landing there
    printed a KeyboardInterrupt traceback from the threading module. On a terminal whose
    encoding is not UTF-8 (PYTHONIOENCODING=ascii, a latin-1 locale), a character it cannot
    print is replaced, where it crashed the command with UnicodeEncodeError."""
    mask_command_line()
    quiet_waits()  # before torch loads OpenMP, here or in the processes this one starts
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    try:
        code = main()
    except KeyboardInterrupt:
        # Ctrl-C as the command reads its arguments (the imports that builds its parser), before
        # the command handles one: a line, not a traceback of the import it landed in.
        command = next((w for w in sys.argv[1:] if not w.startswith("-")), "")
        print(f"scaletune{' ' + command if command else ''}: interrupted", file=sys.stderr,
              flush=True)
        code = 128 + signal.SIGINT
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    # The interpreter's last collections walk every object torch, Ray and optuna made: ~0.45 s
    # of each command's exit. Frozen, they are left to the process's end (refcounts still free
    # what they hold; the command's files are closed by then, and logging's at its exit).
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(entry())
