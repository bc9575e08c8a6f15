"""A study that has run, as export, fit and report read it: opened with the config its trials
trained with, one trial picked, and the values the study fixed instead of searching."""

from __future__ import annotations

import contextlib
import copy
import re
import shlex
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaletune.search.config import (
    NAME_PATTERN,
    NOT_FINGERPRINTED,
    SHARED_DATABASE,
    StudyConfig,
    config_changes,
    holds_study,
    is_ladder,
    located_in_both,
    resolve_study,
    validate_study,
)
from scaletune.search.storage import (
    in_memory_problem,
    make_storage,
    mask_url,
    opened_to_read,
    sqlite_file_errors,
    sqlite_path,
    storage_url,
)
from scaletune.trainer.config import DataConfig, sqlite_url
from scaletune.trainer.errors import ConfigError, DataError, StudyStateError


def left_running(running: int, study: optuna.Study) -> str:
    """What ``N running`` means when no driver holds the study (one was killed): its trials
    stay RUNNING in the storage until the next launch queues them again. Nothing while a driver
    holds it."""
    from scaletune.search import lease

    attrs = study.user_attrs
    if running == 0 or lease.live(attrs.get(lease.ATTR), url=storage_url(study._storage)):
        return ""
    it, was = ("it", "it was") if running == 1 else ("them", "they were")
    left = f"{was} left by a stopped driver, and the next `scaletune run` queues {it} again"
    if lease.ATTR not in attrs:  # never run by a driver that holds a lease
        return (f" (no driver lease is recorded: a scaletune from before 2026-11-30, which kept "
                f"none, may still be running the study; if none is, {left})")
    return f" (no driver runs the study: {left})"


def by_state(trials: list[FrozenTrial]) -> str:
    """``6 complete, 10 pruned, 1 diverged, 1 interrupted and queued again``; FAIL trials queued again
    (user attr ``retried``) are counted apart, as ``n_trials`` does not count them, and diverged
    ones apart from the pruner's stops, as the summary does."""
    from collections import Counter

    from scaletune.search.summary import diverged, reruns_started, state_words

    again = sum(1 for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("retried"))
    return state_words(Counter(t.state.name for t in trials), again, sum(map(diverged, trials)),
                       reruns_started(trials))


def no_complete_trial(study: optuna.Study, trials: list[FrozenTrial], what: str = "") -> str:
    """``study 'x' has no complete trial{what} (1 running (no driver runs the study: ...))``:
    the trials by state, and what becomes of those a stopped driver left running (`show` said
    it; `best` and `export` did not)."""
    running = sum(t.state == TrialState.RUNNING for t in trials)
    words = with_left_running(by_state(trials) or "no trials", running, study)
    return f"study {study.study_name!r} has no complete trial{what} ({words})"


def with_left_running(words: str, running: int, study: optuna.Study) -> str:
    """``words`` (search.summary.state_words) with ``left_running``'s parenthesis after its
    ``N running``, which it is about: at the end it read as said of the last state named."""
    left = left_running(running, study)
    return re.sub(rf"\b{running} running\b", lambda m: m.group(0) + left, words, count=1) \
        if left else words


def running_note(study: optuna.Study) -> str | None:
    """For a command that reads a study a driver is running now (report, best, export): what it
    shows is of this moment, and the best may still change. None when no driver runs it."""
    from scaletune.search import lease

    held = study.user_attrs.get(lease.ATTR)
    if not lease.live(held, url=storage_url(study._storage)):
        return None
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return (f"the study is running now ({lease.describe(held)}; {running} trial(s) running): "
            "this is what it holds so far, and its best may still change")


class Snapshot(optuna.Study):
    """``study`` with its trials read once: what reads it (a report's tables, figures, summary
    and audit) sees one moment of a study that runs. Each read the storage again, and a trial
    that reported in between was drawn with two evaluations in the curves, counted with none
    in trials.csv and with its tokens in summary.json. The study's attrs are read as before."""

    def __init__(self, study: optuna.Study) -> None:
        self.__dict__.update(study.__dict__)  # its storage, id, sampler and pruner
        self._frozen = study.get_trials(deepcopy=False)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = [t for t in self._frozen if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def _get_best_trial(self, deepcopy: bool) -> FrozenTrial:
        complete = self.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise ValueError("No trials are completed yet.")  # as Optuna's storages say it
        pick = max if self.direction == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(complete, key=lambda t: t.value)
        return copy.deepcopy(best) if deepcopy else best


DATA_LOCATION = tuple(key.removeprefix("data.") for key in NOT_FINGERPRINTED
                      if key.startswith("data."))
"""Where a study's data lies (``data.path``, its token cache ...): taken from the study file
that opens the study where the data there is the trials' (``_moved_data``), not from the config
its first launch recorded."""


def open_study(cfg: StudyConfig, source: str | None = None,
               ) -> tuple[optuna.Study, StudyConfig, list[str]]:
    """The study of ``cfg`` and the config it ran with, plus notes for the user; errors name
    ``source`` (by default the study file, ``cfg.source``).

    The config stored in the study (user attr ``config``) is what its trials trained with, so it
    wins over the study file when the two differ; the notes say so. Never creates a storage.
    """
    if not isinstance(cfg, StudyConfig):  # a path: "'str' object has no attribute 'source'"
        raise TypeError(f"open_study takes a StudyConfig, not a {type(cfg).__name__}: "
                        "open_study(load_study(path)), or validate_study(d) for a dict")
    source = source or cfg.source
    url = cfg.storage_url
    shown = mask_url(url)
    with opened_to_read(url, source):
        try:
            database = sqlite_path(url)
            if problems := sqlite_file_errors(url):  # a folder, an empty file, not a database
                raise ConfigError(source, problems)
            # A study run with `run --storage URL` (a PostgreSQL server) is not in the file's
            # storage: "run it first" alone would start it afresh there.
            other = "--storage" if cfg.from_file else "its storage"
            if database is not None and not database.is_file():
                key, run_first = _not_run(source, cfg)
                raise ConfigError(source, [
                    f"{key}no study {cfg.name!r}: its storage {shown} does not exist; "
                    + (_where_it_ran(source, cfg)
                       or f"{run_first}, or give the storage it ran on with {other}")])
            storage = make_storage(url, create=False)
            study = optuna.load_study(study_name=cfg.name, storage=storage)
        except KeyError:
            names = optuna.get_all_study_names(storage)
            key, run_first = _not_run(source, cfg)
            raise ConfigError(source, [
                f"{key}no study named {cfg.name!r} in {shown}; studies there: "
                f"{', '.join(names) or 'none'}; "
                + (_where_it_ran(source, cfg)
                   or f"{run_first}, or give the storage it ran on with {other}")
            ]) from None

    notes: list[str] = []
    stored = study.user_attrs.get("config")
    if stored is None:
        # A driver stopped while it created the study: its next launch writes the record.
        return study, cfg, ["the study records no config (its driver stopped while it created "
                            "it); using the study file as it is now; `scaletune run` of the file "
                            "completes the record"]
    try:
        ran_with = validate_study(stored, f"{shown} (study {cfg.name})", recorded=True)
    except ConfigError as e:
        notes.append(f"the config stored in the study no longer validates ({e.errors[0]}); "
                     "using the study file as it is now")
        return study, cfg, notes
    recorded = study.user_attrs.get("fingerprint")
    if recorded is not None and not cfg.fingerprint_matches(recorded, stored):
        from scaletune.search.plan import search_widening

        widened = search_widening(cfg, stored, recorded)
        if widened:  # what run resumes, and records at its next launch
            notes.append(f"the study file widens the study's search ({', '.join(widened)}), "
                         "which its next launch records; using the config stored in the study, "
                         "which its trials trained with")
        elif widened is None:
            notes.append(f"the study file changed since the study ran "
                         f"({config_changes(stored, cfg)}); using the config stored in the "
                         "study, which its trials trained with")
    # Where the study lives is where it was just opened: the stored config's storage has its
    # password masked, and its folder lost whether it was the default (the shared storage).
    update: dict[str, Any] = {"storage": cfg.storage, "study_dir": cfg.study_dir}
    # And the data is where the file says, when it is the data the trials trained on: a study
    # folder moved or copied with its data. Show named the first folder's data, and export
    # wrote it (gone after a move; after a copy, the original's, without a word).
    moved, other = _moved_data(ran_with.data, cfg.data, study.user_attrs.get("data_fingerprint"))
    if moved:
        update["data"] = cfg.data
    # Read by its name, the data is its last launch's (study_by_name), not a study file's: where
    # that reads otherwise now, the record's is used, as before there was a last launch's.
    notes += [other] if other and not read_by_name(cfg) else []
    fitted = cfg.priors.fitted_file
    if (ran_with.priors.fitted_file and fitted and Path(fitted).is_file()
            and ran_with.priors.model_copy(update={"fitted_file": fitted}) == cfg.priors):
        update["priors"] = cfg.priors  # a ladder's laws file, moved with its ladder's folder
    ran_with = ran_with.model_copy(update=update)
    ran_with._source, ran_with._folder_by_default = cfg._source, cfg._folder_by_default
    return study, ran_with, notes


def _moved_data(ran: DataConfig, now: DataConfig, trained_on: str | None,
                ) -> tuple[bool, str | None]:
    """Is ``now``, a study file's data, the data the study's trials trained on (``ran``, as
    recorded) found elsewhere: the same but for where it lies (``DATA_LOCATION``, and where a
    tokenizer file or local dataset lies, LOCATED), and read there as the fingerprint they
    trained on (``trained_on``)? Other data, or data whose fingerprint is not known without
    preparing it, is not taken for it: the recorded config names what the trials trained on.
    Second, a note where the file's data reads otherwise."""
    location = {key: getattr(now, key) for key in DATA_LOCATION}
    dumped = now.model_dump(mode="json")
    location |= {key: dumped[key]  # known by their content
                 for key in located_in_both(ran.model_dump(mode="json"), dumped)}
    if trained_on is None or now == ran or ran.model_copy(update=location) != now:
        return False, None
    from scaletune.trainer.data import read_fingerprint, where

    try:
        fingerprint = read_fingerprint(now, local_datasets=True)
    except (OSError, DataError) as e:  # a copy without its data, a cache it cannot write
        return False, (f"the study file's {where(now)} cannot be read to compare it with the "
                       f"data the study's trials trained on ({e}); using the config stored in "
                       "the study")
    if fingerprint is None or fingerprint == trained_on:
        return fingerprint == trained_on, None
    return False, (f"the study file's {where(now)} reads as {fingerprint}, not as the data the "
                   f"study's trials trained on ({trained_on}, {where(ran)}); using the config "
                   "stored in the study")


def looks_like_a_name(arg: str) -> bool:
    """Is ``arg``, given where a study file goes, a study's name (as ``scaletune studies`` lists
    them) rather than a file: no such file (a folder of that name, such as the study's own
    folder seen from runs/, is no file), no folder in it and no YAML suffix."""
    path = Path(arg)
    if (path.name != arg or path.suffix in (".yaml", ".yml")
            or re.fullmatch(NAME_PATTERN, arg) is None):
        return False
    try:
        return not path.is_file()
    except OSError:  # no file can have it (a name too long for one): a traceback, it was
        return True


def study_by_name(name: str, url: str | None) -> StudyConfig:
    """The study ``name`` in the storage ``url`` (None: runs/studies.db in this folder, which
    ``scaletune studies`` lists), as the config it recorded when it ran: for the commands that
    read a study (show, best, report, export, delete) given its name instead of its file, as
    from a storage copied from another machine. Errors name what was looked for and where."""
    study, url = study_named(name, url)
    shown = mask_url(url)
    stored = study.user_attrs.get("config")
    if stored is None:
        raise ConfigError(name, [f"the study {name!r} in {shown} records no config (it ran "
                                 "under an early scaletune): give its study file"])
    cfg = validate_study(stored, f"{shown} (study {name})", recorded=True)
    update: dict[str, str] = {"storage": url}
    # Its folder as recorded, where that is on this machine; else (a storage copied from another
    # machine, a study that never wrote its folder) runs/<name> beside the storage where that is
    # a runs/studies.db (it was runs/<name> in the current folder, wherever that was), or here.
    if cfg.study_dir and not Path(cfg.study_dir).is_dir():
        database = sqlite_path(url)
        beside = database is not None and database.name == SHARED_DATABASE
        update["study_dir"] = str(((database.parent if beside else Path("runs")) / name)
                                  .resolve())
    # Its data where its last launch found it (a study folder moved with its data, resumed from
    # there): open_study takes it where it reads as the data the trials trained on.
    if isinstance(last := study.user_attrs.get(LAST_DATA), dict):
        with contextlib.suppress(ValueError):  # a record it cannot read: the config's own
            found = DataConfig.model_validate(last)
            if not found.file_errors():  # gone from there too: the record's, as before
                update["data"] = found
    cfg = cfg.model_copy(update=update)
    cfg._source = name
    return cfg


def read_by_name(cfg: StudyConfig) -> bool:
    """Is ``cfg`` a study's record read by its name (``study_by_name``), with no study file?"""
    return cfg.source == cfg.name and not Path(cfg.source).is_file()


UNIGRAM = "unigram_loss"
"""Study user attr: the validation loss of a model of its data's token frequencies alone
(``trainer.data.unigram_loss``), which a fit of laws compares each study's best loss with
(``search.fit``)."""

LAST_DATA = "last_data"
"""Study user attr: the data section of its last launch (search.plan), where that differs from
the config it recorded: a study moved with its data resumes from the new place (the data's
fingerprint says it is the same), and a study read by its name finds it there."""


def study_named(name: str, url: str | None) -> tuple[optuna.Study, str]:
    """The study ``name`` in the storage ``url`` (None: runs/studies.db in this folder), and
    that storage's URL, for a command given a study's name instead of its file (study_by_name;
    the dashboard, which needs no config). Errors name what was looked for and where; nothing
    is created."""
    if url is None:
        here = Path("runs") / SHARED_DATABASE
        if not here.is_file():
            raise ConfigError(name, [
                f"no such study file, and no {here} in this folder to look for a study of that "
                "name in: give the study's YAML file, or its name with --storage URL"])
        url = sqlite_url(here.resolve())
    shown = mask_url(url)
    database = sqlite_path(url)
    # Read as it is: an empty file gets no tables; an in-memory database was "no such table".
    if problem := in_memory_problem(url) or next(iter(sqlite_file_errors(url)), None):
        raise ConfigError(name, [f"no such study file, and {problem}"])
    if database is not None and not database.is_file():
        raise ConfigError(name, [f"no such study file, and the storage {shown} does not exist"])
    with opened_to_read(url, name):
        storage = make_storage(url, create=False)
        names = optuna.get_all_study_names(storage)
        if name not in names:
            raise ConfigError(name, [
                f"no such study file, and no study of that name in {shown}; studies there: "
                f"{', '.join(names) or 'none'}"])
        return optuna.load_study(study_name=name, storage=storage), url


def moved_from(cfg: StudyConfig) -> tuple[str, Path] | None:
    """Where a study file's ``storage:`` (or a command's ``--storage``) or a ``study_dir:``
    added to it points away from the storage its study ran in: ('storage' or 'study_dir', the
    SQLite file that holds the study), where the storage the file names (or study_dir gives it)
    does not hold it and the default one (the file's without study_dir) does. None otherwise."""
    if not cfg.storage:
        return _moved_by_study_dir(cfg)
    default = cfg.model_copy(update={"storage": None}).storage_url
    database = sqlite_path(default)
    if (default == cfg.storage or not holds_study(database, cfg.name)
            or holds_study(sqlite_path(cfg.storage), cfg.name)):
        return None
    return "storage", database


def elsewhere_note(cfg: StudyConfig) -> str | None:
    """A launch's note where ``moved_from``: the run would start the study afresh, where the
    user may have meant to move or share it. None otherwise."""
    moved = moved_from(cfg)
    if moved is None:
        return None
    key, database = moved
    if key == "study_dir":
        return (f"study_dir: study {cfg.name!r} has run in {database}, the storage of this file "
                f"without study_dir, and study_dir puts its storage in "
                f"{sqlite_path(cfg.storage_url)}: this launch starts it afresh there, and the "
                "trials it ran stay where they are; leave study_dir out to resume it, or give "
                f"storage: sqlite:///{database} to keep it there")
    new = ("starts it afresh there" if sqlite_path(cfg.storage) is not None
           else "starts it afresh there if it is not there")
    return (f"storage: study {cfg.name!r} has run in {database}, the default storage, and this "
            f"launch uses {mask_url(cfg.storage)}: it {new}, and the trials it ran stay in the "
            "default one; leave storage (or --storage) out to resume it")


def _moved_by_study_dir(cfg: StudyConfig) -> tuple[str, Path] | None:
    """moved_from's case of a file that sets study_dir (and no storage), whose study has run in
    the storage the file had without it (runs/studies.db beside it) and not in the one
    study_dir gives it (study.db there): a study_dir added to the file moved the storage. It
    said nothing, and the study started afresh."""
    if cfg._folder_by_default or not cfg.study_dir or not Path(cfg.source).is_file():
        return None
    before = resolve_study(cfg.model_copy(update={"study_dir": None}), Path(cfg.source))
    database, here = sqlite_path(before.storage_url), sqlite_path(cfg.storage_url)
    if (database is None or here is None or database == here
            or not holds_study(database, cfg.name) or holds_study(here, cfg.name)):
        return None
    return "study_dir", database


def _where_it_ran(source: str, cfg: StudyConfig) -> str | None:
    """Where the study of ``cfg``, not in the storage it names, is after all: in the study
    file's own storage (a --storage that names another), or in the one the file named before
    its storage: or study_dir: line was added (show, report and export said "run `scaletune run
    FILE` first", which starts it afresh there). None if in neither."""
    if there := _held_by_the_file(source, cfg):
        return f"the study file's own storage, {there}, holds it: leave out --storage"
    if moved := moved_from(cfg):
        key, database = moved
        what = ("the default storage: leave storage (or --storage) out" if key == "storage"
                else "the file's storage without study_dir: leave study_dir out of the file")
        return f"it has run in {database}, {what}, or give --storage sqlite:///{database}"
    return None


def _not_run(source: str, cfg: StudyConfig) -> tuple[str, str]:
    """(the key a missing study is named by, the command that makes it) for the file
    ``source``: ``name:`` and ``scaletune run``; for a ladder file, whose study is its target
    and runs after its rungs, no key and ``scaletune ladder`` (one reading of the file); for
    ``cfg`` built in code, which has no file, run_study."""

    if not cfg.from_file and source == cfg.source:  # ("study": a file of that name was named)
        return "name: ", "run it first: run_study(cfg)"
    try:
        ladder = is_ladder(source)
    except ConfigError:  # not a file: the command line, a stored config
        ladder = False
    if ladder:
        return "", (f"the ladder's target runs after its rungs: run `scaletune ladder "
                    f"{shlex.quote(source)}` first")
    # A storage given on the command line goes with the command (it named the file's).
    # (A URL with a password, masked, would not run pasted: the flag and URL are named then.)
    url = cfg.storage_url
    storage = ("" if "storage" not in cfg._flags else f" --storage {shlex.quote(url)}"
               if mask_url(url) == url else " --storage URL")
    return "name: ", f"run `scaletune run {shlex.quote(source)}{storage}` first"


def _held_by_the_file(source: str, cfg: StudyConfig) -> str | None:
    """The storage of the study file ``source`` (shown masked), where it is an SQLite file other
    than ``cfg``'s that holds a study of ``cfg``'s name; None otherwise."""
    from scaletune.search.config import holds_study, load_study

    try:
        own = load_study(source).storage_url
    except ConfigError:
        return None
    return mask_url(own) if own != cfg.storage_url and holds_study(sqlite_path(own),
                                                                  cfg.name) else None


def pick_trial(study: optuna.Study, number: int | None, source: str) -> FrozenTrial:
    """Trial ``number``, or the best complete trial; only complete trials have a final loss."""
    if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
        # "1" said there was no trial 1, listing trials 0..3; True picked trial 1
        raise TypeError(f"pick_trial: the trial's number is an int (or None for the best), not "
                        f"a {type(number).__name__}: {number!r}")
    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            raise StudyStateError(source, [no_complete_trial(study, trials, " to export")])
        return min(complete, key=lambda t: t.value)
    found = [t for t in trials if t.number == number]
    if not found:
        raise ConfigError(source, [
            f"--trial: no trial {number} in study {study.study_name!r}; it has trials "
            f"0..{len(trials) - 1}" if trials else f"--trial: study {study.study_name!r} is empty"
        ])
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        raise ConfigError(source, [
            f"--trial: trial {number} is {trial.state.name}, not COMPLETE; only a trial that "
            "trained its whole budget can be exported"
        ])
    return trial
