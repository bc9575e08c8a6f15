"""The plan of a search, and the one way a trial runs.

``SearchPlan.build(cfg)`` turns a study config into everything a study needs before its first
trial: the data, the priors, the search space, the sampler, the pruner and the first trial.
``plan.open_study(storage)`` creates or resumes the Optuna study on a storage (recording or
checking what it ran with, recovering trials a stopped driver left running). Then each trial is
``plan.ask(study, num_threads)`` -> ``TrialRun``: its params and training config;
``run.report(tokens, loss)`` puts each evaluation on the study's token grid and asks the pruner;
``run.tell(study, result)`` ends it from the trainer's result. ``train_trial`` (search.trial) is
the training itself.

``scaletune run`` (search.runner: trials on Ray workers, one driver writing the storage) and
every benchmark (trials in one process) use exactly these, so a published figure measures the
product and not a copy of its study loop.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from scaletune.heuristics.priors import Priors
from scaletune.search import hparams
from scaletune.search.config import (
    CHANGED_UNSAID,
    StudyConfig,
    canonical_search,
    config_changes,
    how_many,
    stored_study_attrs,
    stored_trials,
    validate_study,
)
from scaletune.search.dashboard import (
    noted_source,
    study_note,
    trial_note,
    write_first_note,
    write_note,
)
from scaletune.search.lease import DriverLease
from scaletune.search.noise import REPEAT_OF, TRAIN_SEED
from scaletune.search.pruners import UNJUDGED_STEP, held_against
from scaletune.search.samplers import SearchedAs, make_sampler
from scaletune.search.space import (
    Dim,
    build_space,
    config_problems,
    largest_shape,
    planning_priors,
    prior_center_params,
    space_problems,
    study_priors,
    suggest,
    trial_config,
)
from scaletune.search.storage import (
    batch,
    make_storage,
    mask_url,
    not_connected,
    sqlite_path,
    unreached_lately,
)
from scaletune.search.studies import LAST_DATA, UNIGRAM
from scaletune.search.summary import holds
from scaletune.search.tracking import CREATED
from scaletune.search.trial import train_trial
from scaletune.trainer.config import DROPOUT_SITES, TrainConfig, usable_cores
from scaletune.trainer.data import (
    another_python,
    tokenizer_alone_changed,
    unigram_loss,
    validation_part,
    vocab_problem,
    where,
    where_changed,
)
from scaletune.trainer.errors import ConfigError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ENDED = tuple(s for s in TrialState if s.is_finished())
"""Every state a trial ends in: COMPLETE, PRUNED and FAIL."""
OBJECTIVE = "validation loss (nats/token)"
"""The study's objective, by name: the final validation loss of a trial."""
TRAINING_BYTES_PER_PARAM = 16
"""float32 weights, gradients and AdamW's two moments: 4 x 4 bytes a parameter."""

__all__ = ["FINISHED", "DriverStudy", "SearchPlan", "TrialRun", "n_finished", "recover", "record_or_check",
           "train_trial"]


@dataclass
class SearchPlan:
    """Everything a study of ``cfg`` needs before its first trial."""

    cfg: StudyConfig
    data: Any
    """The prepared data (trainer.data), tokenized and cached once for every trial."""
    priors: Priors
    dims: list[Dim]
    """The searched dimensions, in the order they are suggested."""
    fixed: dict[str, Any]
    """Values the study fixes instead of searching, keyed as ``dims`` are named."""
    lease: DriverLease | None = None
    """This process's lease on the study, once ``open_study`` took it."""
    widened: list[str] | None = None
    """The ranges this launch widened of the study's search, once ``open_study`` opened it
    (``search_widening``); None where it searches as recorded."""

    @classmethod
    def build(cls, cfg: StudyConfig, data: Any = None) -> SearchPlan:
        """The plan of ``cfg``; ``data`` when it was prepared already (the runner's preflight)."""
        if data is None:
            from scaletune.trainer.data import prepare_data

            data = prepare_data(cfg.data, cfg.model.block_size)
        priors = study_priors(cfg, data.vocab_size, data.n_train_tokens)
        dims, fixed = build_space(cfg, priors)  # a space the priors leave empty fails here
        return cls(cfg, data, priors, dims, fixed)

    def problems(self) -> list[str]:
        """What the study implies that no trial could do, found before any trial starts: what
        the study file shows (``search.space.space_problems``: a budget below one optimizer step,
        a max_loss below the first loss, values of search.other that cannot train), a
        vocabulary smaller than the tokenizer's, a model whose training state cannot fit in
        memory."""
        cfg, errors = self.cfg, space_problems(self.cfg, self.dims, self.fixed)
        if small := vocab_problem(cfg.model.vocab_size, self.data.vocab_size,
                                  cfg.data.tokenizer, "trial"):
            errors.append(small)
        if too_big := memory_problem(cfg, self.data.vocab_size):
            errors.append(too_big)
        return errors

    @property
    def first_trial(self) -> dict[str, Any] | None:
        """The trial the laws point at (each prior's center), or None under ``seeding: none``."""
        if self.cfg.seeding != "prior":
            return None
        return prior_center_params(self.dims)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {d.name: d.distribution for d in self.dims}

    def sampler(self, n_existing: int = 0) -> optuna.samplers.BaseSampler:
        """The study's sampler, seeded for a study that already holds ``n_existing`` trials."""
        priors = {d.name: d.prior for d in self.dims if d.prior is not None}
        return make_sampler(self.cfg, priors, n_existing=n_existing)

    def pruner(self) -> optuna.pruners.BasePruner:
        return self.cfg.pruner.build(self.cfg)

    def open_study(self, storage: Any) -> tuple[optuna.Study, list[int]]:
        """Create or resume the study on ``storage``; returns it and the trials recovered.

        This process becomes the study's one driver (``self.lease``, search.lease: refresh it
        while the study runs, release it at the end). A new study records its config, data and
        priors; a resumed one must match them. Trials a stopped driver left RUNNING become FAIL
        and run again. A new study under ``seeding: prior`` gets the priors' center as its first
        trial.
        """
        optuna.create_study(  # creates the study in the storage; the driver's study is below
            study_name=self.cfg.name, storage=storage, direction="minimize", load_if_exists=True,
        )
        study = DriverStudy(study_name=self.cfg.name, storage=storage, pruner=self.pruner())
        self.lease = DriverLease(study)
        self.lease.acquire()  # before anything here takes a RUNNING trial for a dead driver's
        try:
            self.widened = record_or_check(study, self.cfg, self.priors, self.data)
            self._keep_the_batch_sizes(study)
        except BaseException:
            self.lease.release()
            raise
        study.sampler = self.sampler(n_existing=len(study.get_trials(deepcopy=False)))
        if study.user_attrs.get(WIDENED):
            # Trials drawn from the narrower ranges are seen as drawn from the study's ranges:
            # a model-based sampler's search space is the ranges every trial shares, and the
            # widened hyperparameters left it (drawn one at a time, without the others).
            study.sampler = SearchedAs(study.sampler, self.distributions())
        recovered = recover(study, self.cfg.max_retries,
                            last_heard=(self.lease.before or {}).get("heartbeat"))
        first = self.first_trial
        if not study.get_trials(deepcopy=False) and first is not None:
            study.enqueue_trial(first, user_attrs={"source": "prior center"})
        return study, recovered

    def _keep_the_batch_sizes(self, study: optuna.Study) -> None:
        """A resumed study searches the batch sizes it started with. A range's sizes are the
        multiples of ``trainer.micro_batch_size`` in it, and the micro-batch may change between
        launches (what a trial out of memory advises): Optuna refuses other choices for a
        parameter of the study, and the first ask raised, leaving its trial RUNNING for every
        later launch. Refused where the new micro-batch does not divide a size searched."""
        stored = next((t.distributions["batch_size"] for t in
                       reversed(study.get_trials(deepcopy=False))
                       if isinstance(t.distributions.get("batch_size"), CategoricalDistribution)),
                      None)
        for i, d in enumerate(self.dims):
            if d.name != "batch_size" or stored is None or d.distribution == stored:
                continue
            micro = self.cfg.trainer.micro_batch_size or 1
            if undivided := [c for c in stored.choices if c % micro]:
                fits = [2**k for k in range(micro.bit_length())
                        if all(c % 2**k == 0 for c in stored.choices)]
                raise ConfigError(self.cfg.source, [
                    f"trainer.micro_batch_size: {micro} does not divide batch size(s) "
                    f"{', '.join(map(str, undivided))} of the {list(stored.choices)} this study "
                    f"searches: give one that divides them all ({', '.join(map(str, fits))}), "
                    "or leave it out"])
            self.dims[i] = dataclasses.replace(d, distribution=stored)

    def ask(self, study: optuna.Study, num_threads: int | None) -> TrialRun:
        """A new trial: its params, its training config, and the derived values recorded."""
        # Its params, attrs and note go in one write (search.storage.Storage.batch), made before
        # the trial is launched.
        with batch(study._storage):
            with study.held() if isinstance(study, DriverStudy) else contextlib.nullcontext():
                trial = study.ask()
                params = suggest(trial, self.dims)
            attrs = trial.user_attrs  # an enqueued repeat's (search.noise)
            try:
                config, derived = trial_config(self.cfg, params, self.fixed, num_threads,
                                               seed=attrs.get(TRAIN_SEED))
            except (ValidationError, ValueError) as e:  # values space_problems did not try
                invalid = e
            else:
                invalid = None
                for k, v in derived.items():
                    trial.set_user_attr(k, v)
                write_first_note(trial, trial_note(trial.number, params, self.fixed, config,
                                                   derived, attrs.get(REPEAT_OF)))
        if invalid is not None:
            # The trial ends FAIL (not run again: it would fail the same way) and the study
            # stops with the reason, rather than leave the trial running for the next launch.
            reason = ("its values make a trial config no run can train: "
                      f"{'; '.join(config_problems(invalid))}")
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
            drew = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ConfigError(self.cfg.source, [
                f"search: trial {trial.number} drew {drew}, and {reason}; search only values "
                "that train together (the trial is FAIL)"])
        return TrialRun(trial, params, config, self.cfg.eval_interval, self.cfg.pruner.name,
                        prunable=REPEAT_OF not in attrs)


class DriverStudy(optuna.Study):
    """The study as its one driver holds it: what only this driver writes is not read back from
    the storage at every report and every ask.

    Optuna's pruners read the finished trials at every report (MedianPruner: every COMPLETE
    trial's value at the reported step), and its samplers at every ask. Through the RDB storage's
    cache, every such read also re-reads every RUNNING trial from the database (params, user
    attrs, curves), since another process might have written them: 0.09 s at 256 running, and an
    ask made three such reads (benchmarks/driver_scale.py). Here one driver writes the study
    (search.lease), a finished trial does not change, and every trial this driver ends goes
    through ``tell``. So:

    - the finished trials are read once and kept; a trial this driver tells is read alone and
      added, and the whole list is read again after ``add_trial``, or beside the caller once
      ``FINISHED_TTL_S`` old (a write from elsewhere: the dashboard with ``--allow-writes``);
    - inside ``held()`` (SearchPlan.ask drawing a trial, TrialRun.report asking the pruner), the
      running trials are the ones this driver asked for and has not told, as the driver holds
      them (their params, curves and attrs, and the system attrs written to them through this
      study's storage, where successive halving and Hyperband keep each trial's rungs), and
      the storage is only asked for WAITING trials;
    - any other read that includes unfinished trials goes to the storage.

    The runner asks and tells on a thread of its own while its main thread answers reports.
    """

    FINISHED_TTL_S = 30.0
    """How old the kept finished trials may be before they are read again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finished: list[FrozenTrial] | None = None
        self._finished_at = 0.0
        self._ended = 0  # bumped at every change: a read begun before one must not be kept
        self._own: dict[int, optuna.Trial] = {}  # asked here, not told yet
        self._keeping = threading.Lock()
        self._refreshing = False  # the kept trials are being read again (_kept)
        self._held = threading.local()
        # System attrs written to trials (by trial id) through this study's storage: the rungs a
        # successive-halving pruner records on a running trial, which its next decision reads
        # for every trial. Kept until the trial ends.
        self._system_attrs: dict[int, dict[str, Any]] = {}
        write = self._storage.set_trial_system_attr

        def set_trial_system_attr(trial_id: int, key: str, value: Any) -> None:
            write(trial_id, key, value)
            with self._keeping:
                self._system_attrs.setdefault(trial_id, {})[key] = value

        read = self._storage.get_trial_system_attrs

        def get_trial_system_attrs(trial_id: int) -> dict[str, Any]:
            # What a pruner reads of the trial it decides on (Optuna's Trial.should_prune): a
            # running trial of this driver's is as it was asked and written since, where the
            # storage would build the whole trial (13 ms on PostgreSQL at 256 running).
            with self._keeping:
                own = next((t for t in self._own.values() if t._trial_id == trial_id), None)
                written = dict(self._system_attrs.get(trial_id, {}))
            if own is None:
                return read(trial_id)
            return {**own._cached_frozen_trial.system_attrs, **written}

        # On this study's own storage object (Hyperband's bracket studies share it).
        self._storage.set_trial_system_attr = set_trial_system_attr  # type: ignore[method-assign]
        self._storage.get_trial_system_attrs = get_trial_system_attrs  # type: ignore[method-assign]

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Reads of running trials made inside, in this thread, are served from this driver's
        own trials (see the class)."""
        self._held.on = True
        try:
            yield
        finally:
            self._held.on = False

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        # Under get_trials, and what Optuna's samplers call directly (TPE, the intersection
        # search space, PriorSampler).
        wanted = set(states) if isinstance(states, Iterable) else set(TrialState)
        held = getattr(self._held, "on", False)
        if not held and not all(TrialState(s).is_finished() for s in wanted):
            return super()._get_trials(deepcopy, states, use_cache)
        # One view of the two: a trial the storage thread ends meanwhile moves from the own
        # trials to the kept ones, and a read between the two lists missed it (kept read
        # before, own after) or listed it twice (the storage read after its tell, own before
        # the tell was kept); a successive-halving decision changed with it.
        while True:
            with self._keeping:
                before = self._ended
            kept = self._kept()
            with self._keeping:
                if self._ended == before:
                    own = [(t, dict(self._system_attrs.get(t._trial_id, {})))
                           for t in self._own.values()] if held else []
                    break
        trials = [t for t in kept if t.state in wanted]
        if held and TrialState.RUNNING in wanted:
            ended = {t.number for t in kept}
            trials += [_snapshot(t, written) for t, written in own if t.number not in ended]
        if held and TrialState.WAITING in wanted:
            trials += self._waiting()
        trials.sort(key=lambda t: t.number)
        return copy.deepcopy(trials) if deepcopy else trials

    def _kept(self) -> list[FrozenTrial]:
        """Every ended trial: read from the storage when not kept. Kept too long, they are
        served as kept and read again on a thread beside the caller: through the storage's cache
        that read also re-reads every running trial (0.1-0.26 s at 256 running), which a report
        waiting for its answer should not pay; a trial ended elsewhere counts a moment later."""
        with self._keeping:
            kept = self._finished
            stale = (kept is not None
                     and time.monotonic() - self._finished_at > self.FINISHED_TTL_S)
            if stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="driver-study-refresh",
                                 daemon=True).start()
        return self._read_kept() if kept is None else kept

    def _read_kept(self) -> list[FrozenTrial]:
        with self._keeping:
            ended = self._ended
        kept = super()._get_trials(False, ENDED, False)
        with self._keeping:
            if self._ended == ended:  # nothing ended while it was read
                self._finished, self._finished_at = kept, time.monotonic()
        return kept

    def _refresh(self) -> None:
        try:
            self._read_kept()
        except Exception:  # noqa: BLE001 - the kept trials stay; the next read tries again
            pass
        finally:
            with self._keeping:
                self._refreshing = False

    def _waiting(self) -> list[FrozenTrial]:
        """The WAITING trials: through the RDB storage's cache, this read would re-read every
        running trial too; its backend filters by state in the database."""
        backend = getattr(self._storage, "_backend", None)
        if isinstance(backend, optuna.storages.RDBStorage):
            return backend.get_all_trials(self._study_id, deepcopy=False,
                                          states=(TrialState.WAITING,))
        return super()._get_trials(False, (TrialState.WAITING,), False)

    def _pop_waiting_trial_id(self) -> int | None:
        # Optuna's reads every unfinished trial to find the queued ones, at every ask.
        if not self._waiting():
            return None
        return super()._pop_waiting_trial_id()

    def ask(self, fixed_distributions: dict[str, BaseDistribution] | None = None) -> optuna.Trial:
        trial = super().ask(fixed_distributions)
        with self._keeping:
            self._own[trial.number] = trial
        return trial

    def tell(self, trial: Any, *args: Any, **kwargs: Any) -> FrozenTrial:
        try:
            frozen = super().tell(trial, *args, **kwargs)
        except BaseException:
            # Perhaps ended elsewhere (the dashboard): read them all again, and never lie about
            # this trial as a running one.
            self.ended_elsewhere(trial if isinstance(trial, int) else getattr(trial, "number", None))
            raise
        self._changed(self._storage.get_trial(frozen._trial_id))
        return frozen

    def add_trial(self, trial: FrozenTrial) -> None:
        super().add_trial(trial)
        self._changed(None)

    def ended_elsewhere(self, number: int | None) -> None:
        """Trial ``number``, asked here, was ended outside the driver (the dashboard with
        --allow-writes): no longer one of the running trials this study serves; the ended
        ones are read again."""
        with self._keeping:
            gone = self._own.pop(number, None)
            if gone is not None:
                self._system_attrs.pop(gone._trial_id, None)
        self._changed(None)

    def _changed(self, ended: FrozenTrial | None) -> None:
        """Keep ``ended``, just told, beside the kept trials; None: read them all again."""
        with self._keeping:
            self._ended += 1
            if ended is None:
                self._finished = None
                return
            self._own.pop(ended.number, None)
            self._system_attrs.pop(ended._trial_id, None)  # the storage's copy is read with it
            if self._finished is not None:
                self._finished = [t for t in self._finished if t.number != ended.number]
                self._finished.append(ended)
                self._finished.sort(key=lambda t: t.number)


def _snapshot(trial: optuna.Trial, written: dict[str, Any] | None = None) -> FrozenTrial:
    """A running trial as its driver holds it, copied (the driver's main thread may be adding a
    report to it): params and distributions from its suggestions, curve and user attrs from its
    reports and ``set_user_attr``, system attrs as it was asked with and ``written`` since."""
    f = trial._cached_frozen_trial
    return FrozenTrial(
        number=f.number, state=TrialState.RUNNING, value=None, datetime_start=f.datetime_start,
        datetime_complete=None, params=dict(f.params), distributions=dict(f.distributions),
        user_attrs=dict(f.user_attrs), system_attrs={**f.system_attrs, **(written or {})},
        intermediate_values=dict(f.intermediate_values), trial_id=f._trial_id,
    )


@dataclass
class TrialRun:
    """One trial from ask to tell: reports on the token grid, and how it ended."""

    trial: optuna.Trial
    params: dict[str, Any]
    config: TrainConfig
    every: int
    """The study's evaluation interval in tokens: the grid trials are compared on."""
    pruner_name: str
    prunable: bool = True
    """False for a repeat of a config with another training seed: it measures the noise between
    seeds only if it runs to the end (its curve is still reported)."""
    last_step: int = -1
    """The last grid point reported; a later report at the same point is not reported again."""
    unjudged_step: int | None = None
    """The grid point of the trainer's last evaluation, when it was reported and the pruner not
    asked (its tokens reached the budget): recorded as user attr ``UNJUDGED_STEP`` so that a
    replay of the pruner (search.pruners.replay) does not ask there either."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What the caller keeps with the trial (the runner: its Ray task)."""
    tokens_reported: int = 0
    """The tokens of its last report: what it had trained at least, where it ends without a
    result of its own (stopped, its worker lost) to say what it trained."""
    final_value: float | None = None
    """The loss of the trainer's last evaluation, at the end of its budget, once reported: its
    result's final_val_loss (tell_from_final_report)."""

    @property
    def number(self) -> int:
        return self.trial.number

    def report(self, tokens: int, value: float) -> str:
        """Report ``value`` at ``tokens`` seen and answer "continue" or "prune".

        Trials with different batch sizes evaluate at slightly different token counts; each
        value is reported at the grid point below it, so the pruner compares equal tokens.
        """
        step = tokens // self.every * self.every
        self.tokens_reported = max(self.tokens_reported, tokens)
        if step <= self.last_step or not math.isfinite(value):
            return "continue"
        try:
            self.trial.report(value, step)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Ended outside the driver (the dashboard with --allow-writes): its worker stops,
            # and its end is the one stored (search.runner._finish).
            return "prune"
        self.last_step = step
        if tokens >= self.config.tokens:
            self.unjudged_step, self.final_value = step, value
        if not self.prunable or tokens >= self.config.tokens:
            # The trainer's last evaluation (its steps overshoot the budget): nothing is left to
            # save, and a "prune" there would be ignored while the pruner recorded a stop on a
            # trial that completes (a budget off the grid puts it at a grid point below).
            return "continue"
        # Pruners that read every trial (successive halving, Hyperband: the rungs of the running
        # ones too) read them from the driver, not the storage (DriverStudy).
        study = self.trial.study
        with study.held() if isinstance(study, DriverStudy) else contextlib.nullcontext():
            return "prune" if self.trial.should_prune() else "continue"

    def tell(self, study: optuna.Study, result: dict[str, Any]) -> tuple[str, float | None, str | None]:
        """End the trial from the trainer's result (``train_trial``'s dict).

        Returns (state, value, reason): COMPLETE with the final validation loss; PRUNED when
        the pruner stopped it or it diverged (the reason says which); FAIL otherwise.
        """
        trial = self.trial
        # The attrs go in one write (search.storage.Storage.batch), the state after them: the
        # driver's study reads a trial back once it is told.
        with batch(study._storage):
            state, value, reason = self._record_end(study, result)
        if state == "COMPLETE":
            study.tell(trial, value)
        else:
            study.tell(trial, state=TrialState[state])
        return state, value, reason

    def _record_end(self, study: optuna.Study, result: dict[str, Any]) -> tuple[str, float | None, str | None]:
        """Write what the trial's result says as user attrs; how it ended: (state, value, reason)."""
        trial = self.trial
        # "steps" stays the planned number of steps; what the trial really trained is beside it.
        if result.get("steps") is not None:
            trial.set_user_attr("steps_trained", result["steps"])
        for key in ("tokens_seen", "wall_time_s", "train_time_s", "tokens_per_s", "mfu",
                    "best_val_loss", "final_val_loss"):
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        if result.get("grad_norm"):
            trial.set_user_attr("grad_norm", result["grad_norm"])
        if self.unjudged_step is not None:
            trial.set_user_attr(UNJUDGED_STEP, self.unjudged_step)
        if result.get("ended_at") is not None:  # datetime_complete is the driver's tell
            trial.set_user_attr("worker_ended_at", result["ended_at"])
        known = trial.user_attrs  # the worker's "started" message may come after its end
        for k, v in (result.get("worker") or {}).items():
            if f"worker_{k}" not in known:
                trial.set_user_attr(f"worker_{k}", v)
        status = result["status"]
        final = result.get("final_val_loss")
        if status == "completed" and final is not None and math.isfinite(final):
            return "COMPLETE", final, None
        if status in ("stopped", "diverged"):
            if status == "diverged":
                reason = f"diverged: {result.get('reason')}"
            else:  # the trainer stopped because the report was answered "prune"
                reason = f"{self.pruner_name} pruner at {self.last_step:,} tokens"
                stopped_on = getattr(study.pruner, "stopped_on", None)  # the predicted pruner
                if (p := stopped_on and stopped_on(trial.number)) is not None:
                    reason += (f": final loss predicted {p.final:.4f} [{p.low:.4f}, {p.high:.4f}]")
                    reason += held_against(*study.pruner.stopped_against(trial.number),
                                           study.pruner.rank)
            trial.set_user_attr("prune_reason", reason)
            return "PRUNED", None, reason
        reason = result.get("reason") or f"trial ended with status {status}"
        trial.set_user_attr("fail_reason", reason)
        return "FAIL", None, reason

    def tell_from_final_report(self, study: optuna.Study, why: str) -> bool:
        """End the trial COMPLETE with the loss of its trainer's last evaluation, at the end of
        its budget, where that was reported and its result did not come (``why``: the driver
        stopped, and the signal that stopped it reached the worker as the trial wrote its
        result); its whole run was done. The user attr ``result_lost`` says so. False where the
        last evaluation was not reported (the trial is stopped then)."""
        if self.final_value is None:
            return False
        self.trial.set_user_attr("result_lost", f"{why} after its last evaluation, at "
                                 f"{self.tokens_reported:,} tokens: recorded from its report")
        return self.tell(study, {"status": "completed", "final_val_loss": self.final_value,
                                 "tokens_seen": self.tokens_reported})[0] == "COMPLETE"

    def fail(self, study: optuna.Study, reason: str, max_retries: int,
             count_attempt: bool = True) -> bool:
        """Mark the trial FAIL with ``reason``; queue its params again if retries remain. What
        it trained is its last report's tokens (``tokens_seen``, as a result says it): counted
        from its evaluations' grid points instead, a trial stopped after 10,240 tokens had
        trained 10,000 in trials.csv and in the study's compute."""
        if self.tokens_reported and "tokens_seen" not in self.trial.user_attrs:
            self.trial.set_user_attr("tokens_seen", self.tokens_reported)
        return fail_and_retry(study, self.trial, reason, max_retries, count_attempt)


def memory_problem(cfg: StudyConfig, vocab_size: int) -> str | None:
    """Why the largest model a trial may train (search.other's model.n_layer and model.n_embd at
    their top) cannot fit in memory, else None. A searched one was not checked: its trial
    started, and took memory until the machine had none."""
    params = largest_shape(cfg, vocab_size).total_params
    need = TRAINING_BYTES_PER_PARAM * params
    room = _memory_for_a_trial(cfg)
    at_once = _local_trials_at_once(cfg)
    if room is None or need * at_once <= room[0]:
        return None
    searched = (" (the largest model searched)" if {"model.n_layer", "model.n_embd"}
                & {k for k, p in cfg.search.other.items() if p.searched} else "")
    what = (f"model: {params:,.0f} parameters{searched} need at least {need / 2**30:,.1f} GiB to "
            "train (weights, gradients and AdamW state in float32, before activations)")
    if need <= room[0]:  # one fits; the trials the machine runs side by side do not
        return (f"{what}, {at_once} trials at once {at_once * need / 2**30:,.1f} GiB, more than "
                f"{room[1]}: set workers.max_concurrent: {int(room[0] // need)}, or make the "
                "model smaller")
    return f"{what}, more than {room[1]}: make the model smaller"


def _local_trials_at_once(cfg: StudyConfig) -> int:
    """How many trials of a local study on CPUs run side by side (as search.runner.concurrency
    counts them, capped by max_concurrent and n_trials); 1 elsewhere, where each has a device
    or a node of its own."""
    w = cfg.workers
    if w.gpus_per_trial or w.address not in (None, "local"):
        return 1
    fit = how_many(usable_cores(), w.cpus_per_trial)
    return max(1, min(fit, w.max_concurrent or fit, cfg.n_trials))


def _memory_for_a_trial(cfg: StudyConfig) -> tuple[float, str] | None:
    """(bytes, in words) a trial may use at most: this machine's available memory for a local
    study on CPUs; for GPUs or a cluster only a bound no single device passes (1 TiB)."""
    if cfg.workers.gpus_per_trial == 0 and cfg.workers.address in (None, "local"):
        try:
            for line in open("/proc/meminfo", encoding="ascii"):
                if line.startswith("MemAvailable:"):
                    free = float(line.split()[1]) * 1024
                    return free, f"the {free / 2**30:,.1f} GiB of memory available on this machine"
        except OSError:  # no /proc (macOS): the machine's memory, where the system says it
            try:
                whole = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
            except (AttributeError, ValueError, OSError):
                return None
            return whole, f"the {whole / 2**30:,.1f} GiB of memory this machine has"
        return None
    return 2.0**40, "any one device holds (1 TiB)"


# --------------------------------------------------------------------------- the study's state


def n_finished(study: optuna.Study) -> int:
    """Trials that count toward n_trials: complete, pruned, and failures that were not retried."""
    # The driver's study keeps these.
    return n_done(study.get_trials(deepcopy=False, states=ENDED))


def failed_for_good(t: FrozenTrial) -> bool:
    """A failed trial whose params were not queued again (user attr ``retried``): it counts
    toward n_trials, where a retried one's re-run does."""
    return t.state == TrialState.FAIL and not t.user_attrs.get("retried", False)


DRIVER_STOPPED = "the driver stopped while this trial ran"
"""The fail_reason of a trial that a stopped driver left RUNNING (recover)."""


def recover(study: optuna.Study, max_retries: int, last_heard: float | None = None
            ) -> list[int]:
    """Trials left RUNNING by a dead driver become FAIL and their params are re-enqueued.

    Always, whatever ``max_retries`` says: the driver's end is not the trial's failure (as for
    Ctrl-C), and the messages that stopped the study promised the trials would run again.
    ``last_heard``: the dead driver's last heartbeat (its lease, a Unix time), where a trial's
    training ended at the latest (``wall_time_s``, within the heartbeat's period): its end is
    now, which counted the time the driver was down (a weekend) as training. A failed trial
    marked to run again whose re-run was never queued (a driver stopped between the two
    writes) is queued too.
    """
    recovered = []
    trials = study.get_trials(deepcopy=False)
    queued = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("retried") and t.number not in queued:
            # Its FAIL was written and its re-run was not: a driver stopped between the two
            # writes (a second Ctrl-C), and the trial never ran again.
            _queue_again(study, t.number, t.params, t.user_attrs, t.system_attrs, False)
            recovered.append(t.number)
            continue
        if t.state != TrialState.RUNNING:
            continue
        trial = _live_trial(study, t)
        # Measured where its result was written before the driver stopped (its state was
        # not): that measure stays (the heartbeat's estimate made it 0.0).
        if (last_heard is not None and t.datetime_start is not None
                and "wall_time_s" not in t.user_attrs):
            trial.set_user_attr("wall_time_s",
                                max(0.0, last_heard - t.datetime_start.timestamp()))
        fail_and_retry(study, trial, DRIVER_STOPPED, max_retries,
                       count_attempt=False)
        recovered.append(t.number)
    return recovered


def fail_and_retry(study: optuna.Study, trial: optuna.Trial, reason: str, max_retries: int,
                   count_attempt: bool = True) -> bool:
    """Mark ``trial`` FAIL with ``reason``; re-enqueue its params if retries remain."""
    attrs = trial.user_attrs
    attempt = int(attrs.get("attempt", 0))
    retry = attempt < max_retries or not count_attempt
    with batch(study._storage):
        trial.set_user_attr("fail_reason", reason)
        trial.set_user_attr("retried", retry)
    study.tell(trial, state=TrialState.FAIL)
    if retry:
        _queue_again(study, trial.number, trial.params, attrs,
                     study._storage.get_trial_system_attrs(trial._trial_id), count_attempt)
    return retry


def _queue_again(study: optuna.Study, number: int, params: dict[str, Any],
                 attrs: dict[str, Any], system_attrs: dict[str, Any],
                 count_attempt: bool) -> None:
    """Queue trial ``number`` (failed) to run again with its params (``retry_of``), its
    attempt counted where ``count_attempt``."""
    # a repeat's seed and what it repeats; the prior center's label (report's source column)
    carried = {k: attrs[k] for k in (REPEAT_OF, TRAIN_SEED, "source") if k in attrs}
    # A trial stopped before its params were drawn (a driver stopped as it asked) has none
    # yet: a queued one (the priors' center, a retry, a repeat) runs again with those it was
    # queued with, where {} would have let the sampler draw new ones.
    attempt = int(attrs.get("attempt", 0)) + (1 if count_attempt else 0)
    study.enqueue_trial(params or system_attrs.get("fixed_params") or {},
                        user_attrs={"attempt": attempt, "retry_of": number, **carried})


def _live_trial(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A Trial handle on a trial this process did not ask for (one a stopped driver left).

    Through Optuna's private API (``_trial_id``): a FrozenTrial does not expose its storage id,
    and there is no public way to write to a trial by number.
    """
    return optuna.Trial(study, frozen._trial_id)


RECORD = ("config", "data_fingerprint", "data_tokens", "vocab_size", "priors", "provenance")
"""What a study records about how it runs, beside its ``fingerprint``."""

LAST_N_TRIALS = "n_trials"
"""Study user attr: the finished trials its last launch asked for (the file's ``n_trials``, or
``--n-trials``), which `scaletune show` names where the file asks for another number now."""

LAST_RUN = "last_run"
"""Study user attr: the sampler and pruner of its last launch (as the study file's sections),
which `scaletune show` names: a study resumes under a changed sampler or pruner, and the config
it records is that of its first launch."""


def record_or_check(study: optuna.Study, cfg: StudyConfig, priors: Priors,
                    data: Any) -> list[str] | None:
    """A new study records what it runs with; a resumed one must run with the same, or with
    wider ranges of its search (``search_widening``): then the widened search becomes its
    recorded config, and the change is returned ('search.lr.high: 0.03 -> 0.1', ...; None where
    the search is as recorded).

    The fingerprint is written last: a driver killed while it wrote the record leaves no
    fingerprint, or (a record from before that order) a fingerprint without the rest, and the next
    run completes the record instead of taking the study as recorded.
    """
    attrs = study.user_attrs
    stored = attrs.get("fingerprint")
    widened = None
    if stored is not None and not cfg.fingerprint_matches(stored, attrs.get("config")):
        widened = search_widening(cfg, attrs.get("config"), stored, priors)
        if widened is None:
            raise ConfigError(cfg.source, [_changed_study(cfg, recorded_changes(attrs, cfg))])
    if stored is not None:
        if change := _changed_data(cfg, attrs, data.fingerprint, data.n_train_tokens):
            raise ConfigError(cfg.source, [change])
        _record_unigram(study, cfg, data)  # studies from before it get it at their next launch
        if widened is not None:
            _record_widening(study, cfg, widened, priors)
        else:
            _finish_widening(study, cfg, priors)
        if all(key in attrs for key in RECORD):
            _renote(study, cfg, study.user_attrs["config"], priors)
            _record_n_trials(study, cfg)
            return widened or None  # [], the same ranges written otherwise: nothing to say
    config = _recorded_config(cfg)
    record = {
        "config": config,
        "data_fingerprint": data.fingerprint,
        "data_tokens": {"train": data.n_train_tokens, "val": data.n_val_tokens},
        "vocab_size": data.vocab_size,
        "priors": priors.to_json(),
        # Stored as "provenance" since the first version (readers of older studies look there);
        # it is the code and machine, where an exported config's provenance is the study and
        # trial it came from.
        "provenance": code_and_machine(),
        CREATED: datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # A record without a fingerprint is one a driver stopped while it wrote it: no trial ran
    # under it, and this launch's config and data are the study's (a wider file run next was
    # taken for a widening of the first file's config, kept beside its fingerprint). One with a
    # fingerprint (written first by early versions) keeps what it has.
    for key, value in record.items():
        if key not in attrs or (stored is None and key != CREATED):
            study.set_user_attr(key, value)
    recorded = config if stored is None else attrs.get("config", config)
    write_note(study, study_note(cfg, recorded, priors), keep=True)
    if study.metric_names is None:  # what the dashboard calls the objective ("Objective 0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE])
    _record_n_trials(study, cfg)
    _record_unigram(study, cfg, data)
    study.set_user_attr("fingerprint", cfg.fingerprint())
    return widened or None


def _record_unigram(study: optuna.Study, cfg: StudyConfig, data: Any) -> None:
    """Record what token frequencies alone score on the study's data (``UNIGRAM``), once."""
    if study.user_attrs.get(UNIGRAM) is None:
        study.set_user_attr(UNIGRAM, unigram_loss(data, cfg.model.block_size,
                                                  cfg.data.val_windows))


WIDENED = "search_widened"
"""Study user attr: the launches that widened ranges of its search, oldest first, each as
{"at": ISO time, "changes": ["search.lr.high: 0.03 -> 0.1", ...], "search": the search section
it widened to, as the config records it} (``search_widening``)."""


def _recorded_config(cfg: StudyConfig) -> dict[str, Any]:
    """``cfg`` as a study records it: every field, passwords masked."""
    config = cfg.model_dump(mode="json", by_alias=True)
    if config.get("storage"):
        config["storage"] = mask_url(config["storage"])
    mlflow = (config.get("tracking") or {}).get("mlflow") or {}
    if mlflow.get("tracking_uri"):  # may carry a password too
        mlflow["tracking_uri"] = mask_url(mlflow["tracking_uri"])
    return config


def _record_widening(study: optuna.Study, cfg: StudyConfig, changes: list[str],
                     priors: Priors) -> None:
    """The study searches ``cfg``'s ranges from this launch on, which widen its search by
    ``changes`` ([]: the same ranges, written otherwise). One write each, in this order: the
    fingerprint, the launch in WIDENED, the dashboard's note where it is the one its driver
    wrote, then the recorded config's search. A driver stopped between two of them leaves a
    study that resumes under the widened file, whose next launch writes the rest
    (``_finish_widening``); the file before is refused from the first write on, as a file
    that narrows the search."""
    study.set_user_attr("fingerprint", cfg.fingerprint())
    _finish_widening(study, cfg, priors, changes)


def _finish_widening(study: optuna.Study, cfg: StudyConfig, priors: Priors,
                     changes: list[str] | None = None) -> None:
    """The widening of the study's search to ``cfg``'s (whose fingerprint it has) recorded:
    WIDENED (once: not where its last entry is this search, from a launch stopped part way),
    the note and the config. Nothing where the recorded config's search is ``cfg``'s.
    ``changes``: the widening (``search_widening``); None: found here, from the search the
    config records (a launch that stopped after the fingerprint)."""
    recorded = study.user_attrs.get("config") or {}
    now = _recorded_config(cfg)["search"]
    if not isinstance(recorded.get("search"), dict) or _same_search(recorded["search"], now):
        return
    if changes is None:
        try:
            ran = validate_study(recorded, cfg.source, recorded=True)
        except ConfigError:  # a record of another version: left as it is
            return
        changes = _widening(cfg.model_copy(update={"search": ran.search}), cfg, priors)
        if changes is None:
            return
    entries = before = list(study.user_attrs.get(WIDENED) or [])
    if changes:
        if not (entries and _same_search(entries[-1].get("search"), now)):
            entries = [*entries, {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  "changes": changes, "search": now}]
            study.set_user_attr(WIDENED, entries)
        before = entries[:-1]
    _write_search(study, cfg, priors, entries, before)


def _same_search(a: Any, b: Any) -> bool:
    """Are ``a`` and ``b``, search sections as a study records them, the same search?"""
    return (isinstance(a, dict) and isinstance(b, dict)
            and canonical_search(a) == canonical_search(b))


def _write_search(study: optuna.Study, cfg: StudyConfig, priors: Priors,
                  entries: list[dict[str, Any]], before: list[dict[str, Any]]) -> None:
    """``cfg``'s search into the study's record: its dashboard note first, where that is the
    one its driver wrote for the recorded config (with the widenings ``before``), then the
    config (the rest stays as recorded: the paths a moved study recorded, say)."""
    from optuna_dashboard import get_note, save_note

    recorded = study.user_attrs["config"]
    config = copy.deepcopy(recorded)
    config["search"] = _recorded_config(cfg)["search"]
    try:
        ran = validate_study(recorded, cfg.source, recorded=True)
    except ConfigError:  # a record of another version: its note is left as it is
        ran = None
    if ran is not None:
        then = cfg.model_copy(update={"search": ran.search,
                                      "description": recorded.get("description") or ""})
        current = get_note(study)
        first = noted_source(current)  # the file of the first launch, whatever runs it now
        if current == study_note(then, recorded, priors, before, first):
            save_note(study, study_note(cfg, config, priors, entries, first))
    study.set_user_attr("config", config)


def widening_note(changes: list[str]) -> str:
    """What a launch that widens ranges of a stored study's search (``changes``) does."""
    return (f"the stored study resumes with its search widened ({', '.join(changes)}): its "
            "trials so far, drawn from the narrower ranges, are kept and the sampler learns "
            "from them; the trials it runs from now on (where n_trials asks for more than have "
            "finished) are drawn from the wider ranges")


def search_widening(cfg: StudyConfig, recorded: Any, fingerprint: Any,
                    priors: Priors | None = None) -> list[str] | None:
    """How ``cfg`` widens the search of a stored study whose recorded config is ``recorded`` and
    fingerprint ``fingerprint``, where that is all it changes of what the trials trained with:
    the same hyperparameters searched, each over a range that holds the one the study searched
    (on the same scale, log or linear, and step), the same choices and fixed values, every other
    key as recorded. Each end that moved out is named: 'search.lr.high: 0.03 -> 0.1'; [] where
    the file writes the same ranges otherwise (a range given as the priors make it). None where
    it changes anything else, narrows a range, changes choices (Optuna keeps one set of choices
    per parameter of a study) or the record cannot be read. ``priors``: the study's, which make
    the ranges of ``prior: auto``; the planning priors where not given."""
    if not isinstance(recorded, dict) or not isinstance(fingerprint, str):
        return None
    try:
        ran = validate_study(recorded, cfg.source, recorded=True)
    except ConfigError:
        return None
    back = cfg.model_copy(update={"search": ran.search})
    if not back.fingerprint_matches(fingerprint, recorded):
        return None
    return _widening(back, cfg, priors)


def _widening(back: StudyConfig, cfg: StudyConfig,
              priors: Priors | None = None) -> list[str] | None:
    """``search_widening`` of two configs that differ only in their search: ``back``'s, the
    one the study searched, and ``cfg``'s."""
    try:
        if priors is None:
            priors = planning_priors(cfg)
        (was, fixed_was), (now, fixed_now) = build_space(back, priors), build_space(cfg, priors)
    except (ConfigError, ValueError):
        return None
    if fixed_was != fixed_now or [d.name for d in was] != [d.name for d in now]:
        return None
    changes = []
    for old, new in zip(was, now, strict=True):
        a, b = old.distribution, new.distribution
        if a == b:
            continue
        if not holds(b, a):
            return None
        hp = hparams.get(new.name)
        show = hp.show if hp is not None else (lambda v: format(v, ".3g"))
        key = (f"search.{hparams.owner(hp).name}" if hp is not None
               else f"search.other.{new.name}")
        changes += [f"{key}.{end}: {' -> '.join(_apart(show, getattr(a, end), getattr(b, end)))}"
                    for end in ("low", "high") if getattr(a, end) != getattr(b, end)]
    return changes


def _apart(show: Any, a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` as ``show`` writes them, or with as many more digits as tell them apart
    (an end the priors gave, 0.0608948, widened to 0.0609 read '0.0609 -> 0.0609')."""
    for shown in (show, lambda v: format(v, ".6g"), repr):
        if shown(a) != shown(b):
            return shown(a), shown(b)
    return repr(a), repr(b)


def stored_trial_states(cfg: StudyConfig) -> list[Any] | None:
    """The trials of ``cfg``'s study in its SQLite storage, each with its ``state`` and the
    ``user_attrs`` that decide what counts toward n_trials (enough for ``n_done``, ``failed_for_good``,
    search.noise's counts), read without opening the study or writing anything; None where the
    storage is not an SQLite file or does not hold the study."""
    database = sqlite_path(cfg.storage_url)
    if database is None:
        return None
    stored = stored_trials(database, cfg.name, ("retried", REPEAT_OF))
    if stored is None or any(state not in TrialState.__members__ for state, _ in stored):
        return None
    return [SimpleNamespace(state=TrialState[state], user_attrs=attrs) for state, attrs in stored]


def n_done(trials: Iterable[Any]) -> int:
    """Trials that count toward n_trials (``n_finished``, on a list of trials)."""
    return sum(t.state in FINISHED or failed_for_good(t) for t in trials)


def stored_change(cfg: StudyConfig, rename: str = "give this study a new name") -> str | None:
    """What ``record_or_check`` will refuse, found without opening the study: the SQLite storage
    holds a study of this name whose trials trained with something this file changes. For
    `scaletune validate` and `run --dry-run`, and `run` before Ray starts; None where the study
    resumes, is new, or its storage is not an SQLite file (the run checks it there)."""
    changes = stored_changes(cfg)
    return None if changes is None else _changed_study(cfg, changes, rename)


def stored_changes(cfg: StudyConfig) -> str | None:
    """What ``cfg`` changes of the stored study of its name (``search.batch_size.choices: [4,
    8] -> [2, 4, 8]``), as ``stored_change`` finds it; None where it resumes."""
    attrs = _recorded_attrs(cfg, ("config", WIDENED))
    if attrs is None or resumes_under(cfg, attrs):
        return None
    return recorded_changes(attrs, cfg)


def started_apart(target: StudyConfig, rename: str) -> str | None:
    """The error of a stored study of a ladder target's name that no ladder started: a study
    file run by itself under that name, whose record has the published laws' priors (a ladder's
    target has its fitted laws'). The ladder resumed it as its target without a word, and its
    first trial was never the laws' center. ``rename``: how to start the ladder afresh."""
    attrs = _recorded_attrs(target, ("config",))
    priors = ((attrs or {}).get("config") or {}).get("priors")
    if attrs is None or not isinstance(priors, dict) or priors.get("laws") == "fitted":
        return None
    return (f"name: a study named {target.name!r} already exists in "
            f"{mask_url(target.storage_url)}, run apart from this ladder (its priors are the "
            f"{priors.get('laws')} laws, where the ladder's target takes the laws its rungs "
            f"fit): {rename}, or delete that study (scaletune delete {target.name} --storage "
            f"{mask_url(target.storage_url)})")


def recorded_changes(attrs: dict[str, Any], cfg: StudyConfig) -> str:
    """``config_changes`` of a stored study with these user attrs, saying where its recorded
    search is one a launch widened (a file that narrows it again read 'search.lr.high: 0.03 ->
    0.003', though its first trials drew from 0.003)."""
    changes = config_changes(attrs.get("config"), cfg)
    recorded = (attrs.get("config") or {}).get("search")
    entries = [e for e in attrs.get(WIDENED) or [] if isinstance(e, dict)]
    if entries and isinstance(entries[-1].get("search"), dict) \
            and not _same_search(entries[-1]["search"], recorded):
        # A launch that widened the search stopped before it wrote the config (_record_widening).
        return (f"{changes} (the study's last launch widened its search, "
                f"{', '.join(entries[-1].get('changes') or [])}, and stopped before it had "
                "recorded all of it: run the study file with those ranges again, which records "
                "the rest)")
    if changes == CHANGED_UNSAID and _same_search(recorded, _recorded_config(cfg)["search"]):
        # Perhaps a launch that widened the search stopped after its first write.
        return (f"{changes} (or, where the study's last launch widened its search and stopped "
                "before it had recorded it, run the study file with the wider ranges again)")
    widened = {change.partition(":")[0] for entry in entries
               for change in entry.get("changes") or []}
    if any(f"{key}:" in changes for key in widened):
        changes += (" (the study's search as a launch widened it: its trials before that drew "
                    "from narrower ranges, and a range widened cannot narrow again)")
    return changes


def resumes_under(cfg: StudyConfig, attrs: dict[str, Any]) -> bool:
    """Does a stored study with these user attrs (its ``fingerprint`` and ``config``) resume
    under ``cfg``: its config, or wider ranges of its search?"""
    return (cfg.fingerprint_matches(attrs["fingerprint"], attrs.get("config"))
            or search_widening(cfg, attrs.get("config"), attrs["fingerprint"]) is not None)


def stored_widening(cfg: StudyConfig) -> list[str] | None:
    """The ranges ``cfg`` widens of the stored study of its name (``search_widening``), found
    without opening it; None where the study is new, resumes as it is (its ranges written
    otherwise among that), or cannot resume."""
    attrs = _recorded_attrs(cfg, ("config",))
    if attrs is None or cfg.fingerprint_matches(attrs["fingerprint"], attrs.get("config")):
        return None
    return search_widening(cfg, attrs.get("config"), attrs["fingerprint"]) or None


def _renote(study: optuna.Study, cfg: StudyConfig, config: dict[str, Any],
            priors: Priors) -> None:
    """The dashboard's note of a resumed study: written where there is none, and written again
    with the study file's description where that changed since the note was written (an edit
    to description was taken and shown nowhere); a note that is not the one the study's driver
    wrote (a user's, written with --allow-writes) is kept."""
    from optuna_dashboard import get_note, save_note

    widened, current = study.user_attrs.get(WIDENED), get_note(study)
    first = noted_source(current)  # the file of the first launch, whatever runs it now
    note = study_note(cfg, config, priors, widened, first)
    if not current:
        save_note(study, note)
    elif current != note:
        before = cfg.model_copy(update={"description": config.get("description") or ""})
        if current == study_note(before, config, priors, widened, first):
            save_note(study, note)


def _recorded_attrs(cfg: StudyConfig, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The user attrs among ``keys`` of the study of ``cfg``'s name in its storage, with its
    recorded ``fingerprint``; None where the storage holds no study of that name that recorded
    one, or cannot be read (search.storage.unreachable says why). Read without writing."""
    attrs = study_attrs(cfg.storage_url, cfg.name, ("fingerprint", *keys))
    return attrs if isinstance(attrs.get("fingerprint"), str) else None


def study_attrs(url: str, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Study ``name``'s user attrs among ``keys`` in the storage ``url``, read without writing
    or creating anything: an SQLite file's as ``stored_study_attrs`` reads them, a server's
    (PostgreSQL) opened as the commands that read a study open it; {} where the study or the
    attrs are not there, or the storage cannot be read (search.storage.unreachable says why)."""
    database = sqlite_path(url)
    if database is not None:
        return stored_study_attrs(database, name, keys)
    if unreached_lately(url):  # each try waits for the server's timeout, to learn it again
        return {}
    try:
        stored = optuna.load_study(study_name=name, storage=make_storage(url, create=False))
    except Exception as e:  # noqa: BLE001 - no such study, or no storage to read: nothing known
        not_connected(e, url)
        return {}
    return {k: stored.user_attrs[k] for k in keys if k in stored.user_attrs}


def stored_data_change(cfg: StudyConfig, fingerprint: str,
                       rename: str = "give this study a new name") -> str | None:
    """What ``record_or_check`` will refuse of data that reads as ``fingerprint``
    (trainer.data.read_fingerprint), found without opening the study: the SQLite storage holds
    a study of this name, with this file's config, whose trials trained on other data. For
    `scaletune validate` and `run --dry-run`; None otherwise."""
    attrs = _recorded_attrs(cfg, ("data_fingerprint", "data_tokens", "provenance", "config"))
    if attrs is None or not resumes_under(cfg, attrs):
        return None  # a new study, or one stored_change names
    return _changed_data(cfg, attrs, fingerprint, None, rename)


def _changed_data(cfg: StudyConfig, attrs: dict[str, Any], fingerprint: str,
                  n_train: int | None, rename: str = "give this study a new name") -> str | None:
    """The study's trials (``attrs``, its user attrs) trained on data other than ``fingerprint``
    (of ``n_train`` training tokens, where known): why it cannot resume, ending in ``rename``.
    None where they match, or the study recorded no data."""
    ran_on = attrs.get("data_fingerprint")
    if ran_on is None or ran_on == fingerprint:
        return None
    (train_then, _, val_then), (train_now, _, val_now) = (ran_on.partition("+"),
                                                          fingerprint.partition("+"))
    if train_then == train_now and bool(val_then) != bool(val_now):
        # The same text, validated now on data given apart, or now on a part held out of it.
        held = validation_part(cfg.data)
        how = (f"on {where(held)}, where its trials validated on a part held out of the training "
               "data" if held else "on a part held out of the training data, where its trials "
               "validated on data given apart")
        return (f"data: the study's validation changed: it now validates {how}; their losses do "
                f"not compare with the new ones: undo the change, or {rename}")
    tokens = attrs.get("data_tokens")
    before = tokens.get("train") if isinstance(tokens, dict) else None
    said = (f"data: the study's trials trained on data {ran_on}"
            + (f" ({before:,} training tokens)" if before else "")
            + f", but the data now reads as {fingerprint} ("
            + (f"{n_train:,} training tokens, " if n_train is not None else "")
            + f"{where_changed(cfg.data, ran_on, fingerprint)}): ")
    began = (attrs.get("provenance") or {}).get("python")
    if why := another_python(cfg.data, ran_on, fingerprint, began, "the study began"):
        return f"{said}{why}; run it with that Python, or {rename}"
    what = "tokenizer" if tokenizer_alone_changed(ran_on, fingerprint) else "text or tokenizer"
    return (f"{said}its {what} changed, and one study must not mix trials on different data; "
            f"restore the data, or {rename}")


def mps_problem(cfg: StudyConfig) -> str | None:
    """``trainer.device: mps`` for trials that run on this machine, which is no Apple-silicon
    Mac: every trial would fail at its set-up ("torch sees no Apple GPU here"). `run` refuses
    it before Ray starts; `validate` notes it (the file may be meant for a Mac)."""
    import platform

    if cfg.trainer.device != "mps" or cfg.workers.address not in (None, "local"):
        return None
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return None
    return (f"trainer.device: mps is Apple's GPU, and this machine ({platform.system()} "
            f"{platform.machine()}) has none: every trial would fail at its set-up; give "
            "device: auto (a GPU where there is one, else the CPU) or cpu, or run the study on "
            "an Apple-silicon Mac")


def optimizer_note(cfg: StudyConfig) -> str | None:
    """The note for a study whose trials train with sgd or muon (trainer.optim.name, or among
    the choices of search.other's optim.name): the priors are laws fitted on AdamW, and lr and
    tau do not mean there what they mean under AdamW. They trained without a word."""
    names = cfg.optimizers
    said = []
    if "muon" in names:
        said.append("under muon, search.lr is the lr of the AdamW groups (embeddings, head, "
                    "norms); the hidden matrices train at trainer.optim.muon_lr "
                    f"({cfg.trainer.optim.muon_lr:g}) in every trial, and tau gives weight "
                    "decay's lambda from search.lr alone")
    if "sgd" in names:
        said.append("under sgd, weight decay is torch's L2 penalty, which tau (the AdamW "
                    "timescale B/(lr*lambda*D)) does not describe")
    if not said:
        return None
    named = " and ".join(sorted(n for n in names if n in ("muon", "sgd")))
    key = ("search.other.optim.name" if "optim.name" in cfg.search.other  # as the file says it
           else "trainer.optim.name")
    return (f"{key} {named}: the priors are scaling laws fitted on AdamW, so their "
            f"centers are a guess here; {'; '.join(said)}")


def optim_note(cfg: StudyConfig) -> str | None:
    """The note for fields of ``trainer.optim`` and ``model`` that the study's optimizer,
    schedule or position encoding does not read (_SomeFieldsRead.unread_note), unless
    search.other searches what decides."""
    notes = []
    for section, owner, prefix in (("model", cfg.model, "model"),
                                   ("optim", cfg.trainer.optim, "trainer.optim")):
        searched = [dotted.removeprefix(f"{section}.") for dotted in cfg.search.other
                    if dotted.startswith(f"{section}.")]
        if note := owner.unread_note(prefix, searched):
            notes.append(note)
        # A field searched that no trial reads: its values train alike (it had no note).
        notes += [f"search.other.{section}.{field} is read only when {prefix}.{key} is "
                  f"{' or '.join(readers)} (here {getattr(owner, key)}): its values train alike"
                  for field, key, readers in owner.unread(searched) if field in searched]
    notes += [note] if (note := _dropout_note(cfg)) else []
    return "; ".join(notes) or None


def _dropout_note(cfg: StudyConfig) -> str | None:
    """The note for a searched dropout that sites with a rate of their own (in ``model:`` or
    searched under search.other) do not read: where every site has one, its values train alike
    (a study drew them without a word, every trial's loss the same)."""
    param = cfg.search.params.get("dropout")
    if param is None or not param.searched:
        return None
    own = [site for site in DROPOUT_SITES
           if getattr(cfg.model, f"{site}_dropout") is not None
           or f"model.{site}_dropout" in cfg.search.other]
    if not own:
        return None
    given = ", ".join(f"model.{site}_dropout" for site in own)
    if len(own) == len(DROPOUT_SITES):
        return (f"search.dropout sets model.dropout, which no dropout site reads here ({given} "
                "each give their own rate): its values train alike; drop those four, or fix "
                "search.dropout with {value: ..}")
    rest = ", ".join(site for site in DROPOUT_SITES if site not in own)
    keep = "keeps its" if len(own) == 1 else "keep their"
    return (f"search.dropout sets the rate of the dropout sites that give none of their own "
            f"({rest}) only: {given} {keep} own")


def _changed_study(cfg: StudyConfig, changes: str,
                   rename: str = "give this study a new name") -> str:
    """Why a stored study cannot resume under ``cfg``, which ``changes`` (``config_changes``) what
    its trials trained with; ``rename``: how to start a new one."""
    return changed_studies([cfg.name], cfg.storage_url, changes, rename,
                           "this file changes what its")


def changed_studies(names: list[str], storage_url: str, changes: str, rename: str,
                    who: str = "the ladder's files change what their") -> str:
    """Why stored studies ``names`` (a study, or stages of a ladder) cannot resume under what
    ``who`` makes of their trials' config: ``changes``; ``rename``: how to start new ones."""
    studies = (f"a study named {names[0]!r} already exists" if len(names) == 1 else
               f"studies named {', '.join(map(repr, names))} already exist")
    return (f"name: {studies} in {mask_url(storage_url)} and {who} trials trained with: "
            f"{changes}; {rename}, or undo the change (changing only n_trials, workers, sampler, "
            "pruner or trainer.micro_batch_size, or widening ranges of the search, resumes it; "
            "batch sizes are choices, which a study keeps)")


def _record_n_trials(study: optuna.Study, cfg: StudyConfig) -> None:
    """What this launch runs with that may change from one launch to the next: the n_trials it
    asks for, its sampler and pruner (LAST_RUN), and where it found the data (LAST_DATA)."""
    attrs = study.user_attrs  # one read: each is a query of every user attr and a deep copy
    if attrs.get(LAST_N_TRIALS) != cfg.n_trials:
        study.set_user_attr(LAST_N_TRIALS, cfg.n_trials)
    data = cfg.data.model_dump(mode="json", by_alias=True)
    if attrs.get(LAST_DATA, (attrs.get("config") or {}).get("data")) != data:
        study.set_user_attr(LAST_DATA, data)
    last = {key: getattr(cfg, key).model_dump(mode="json", by_alias=True)
            for key in ("sampler", "pruner")}
    if attrs.get(LAST_RUN) != last:
        study.set_user_attr(LAST_RUN, last)


def as_launched(study: optuna.Study, cfg: StudyConfig, ran_with: StudyConfig,
                file: bool = True) -> tuple[StudyConfig, str | None]:
    """``ran_with`` with the n_trials, sampler and pruner of the study's last launch (for a
    study that did not record them: the study file's pruner, ``cfg``'s), and the note of a
    pruner or a sampler other than the one it started with (``pruner_note``). For show and
    report; ``file``: ``cfg`` is a study file's, not a study's record read by its name (which
    says nothing of what a file names)."""
    if LAST_RUN not in study.user_attrs:
        if pruner_note(study.user_attrs, cfg):
            ran_with = ran_with.model_copy(update={"pruner": cfg.pruner})
        return ran_with, pruner_note(study.user_attrs, ran_with)
    ran_with = last_run(study, ran_with)
    stored = study.user_attrs.get("config")
    said = [note for kind, kept in (("pruner", "trials already stopped keep their decisions"),
                                    ("sampler", "trials already drawn keep their values"))
            if (note := _launched_under(kind, kept, stored, getattr(ran_with, kind).name,
                                        getattr(cfg if file else ran_with, kind).name))]
    return ran_with, ". ".join(said) or None


def _launched_under(kind: str, kept: str, stored: Any, last: str, next_: str) -> str | None:
    """The note of a study whose ``kind`` (pruner, sampler) changed since its first launch (as
    the config it recorded names it): at its last launch (``last``), or in the study file
    (``next_``); None where none changed. (show described the whole of a study begun under TPE
    as random search once its file named random.)"""
    first = _first_name(stored, kind)
    if first is None or first == last == next_:
        return None
    said = (f"this study started under the {first} {kind}"
            + (f" and its last launch ran under the {last} {kind}" if last != first else "")
            + f"; {kept}")
    if next_ != last:
        said += f"; the study file names the {next_} {kind}, which its next launch runs under"
    if next_ != first:
        said += (f". `{kind}: {_as_written(stored[kind], kind)}` in the study file returns to the "
                 "one it started with")
    return said


def last_run(study: optuna.Study, ran_with: StudyConfig) -> StudyConfig:
    """``ran_with`` (the config the study recorded at its first launch) with the n_trials,
    sampler and pruner of its last launch, as far as the study recorded them."""
    from pydantic import TypeAdapter

    from scaletune.search.config import RECORDED, PrunerConfig, SamplerConfig

    attrs, update, record = study.user_attrs, {}, {RECORDED: True}  # every field, defaults too
    if isinstance(attrs.get(LAST_N_TRIALS), int):
        update["n_trials"] = attrs[LAST_N_TRIALS]
    last = attrs.get(LAST_RUN)
    if isinstance(last, dict):
        with contextlib.suppress(ValidationError, TypeError):
            update["sampler"] = SamplerConfig.model_validate(last.get("sampler"), context=record)
        with contextlib.suppress(ValidationError, TypeError):
            update["pruner"] = TypeAdapter(PrunerConfig).validate_python(last.get("pruner"),
                                                                         context=record)
    return ran_with.model_copy(update=update) if update else ran_with


def pruner_note(attrs: dict[str, Any], cfg: StudyConfig) -> str | None:
    """What a resumed study should be told when it goes on under another pruner than the one it
    started with (recorded in its config): the study file's ``pruner:`` changed, or it names
    none and the default changed since (median before the predicted pruner). None otherwise."""
    return _switched(attrs, cfg, "pruner", "trials already stopped keep their decisions")


def sampler_note(attrs: dict[str, Any], cfg: StudyConfig) -> str | None:
    """``pruner_note`` for the sampler: a study resumed under another sampler than the one it
    started with draws its new trials another way, which its record does not show."""
    return _switched(attrs, cfg, "sampler",
                     "the trials it has run stay and the new one draws the next")


def _first_name(stored: Any, section: str) -> str | None:
    """The name of the ``section`` (pruner, sampler) a study started under, as the config it
    recorded at its first launch gives it; None where it recorded none."""
    return (stored.get(section) or {}).get("name") if isinstance(stored, dict) else None


def _switched(attrs: dict[str, Any], cfg: StudyConfig, section: str, kept: str) -> str | None:
    stored = attrs.get("config")
    before = _first_name(stored, section)
    now = getattr(cfg, section).name
    if before is None or before == now:
        return None
    return (f"this study started under the {before} {section} and goes on under the {now} "
            f"{section} (the study file's {section}, or the default where it names none); "
            f"{kept}. `{section}: {_as_written(stored[section], section)}` in the study file "
            "keeps the one it started with")


def _as_written(recorded: dict[str, Any], section: str = "pruner") -> str:
    """A recorded pruner or sampler as a study file would say it: ``{name: median,
    n_startup_trials: 3}``, its name and the options it set away from their defaults."""
    from pydantic import TypeAdapter

    from scaletune.search.config import RECORDED, PrunerConfig, SamplerConfig

    kind = PrunerConfig if section == "pruner" else SamplerConfig
    try:
        parsed = TypeAdapter(kind).validate_python(recorded, context={RECORDED: True})
        keys = parsed.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    except ValidationError:
        keys = {}
    keys = {"name": recorded["name"], **{k: v for k, v in keys.items() if k != "name"}}
    return "{" + ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                           for k, v in keys.items()) + "}"


def priors_note(attrs: dict[str, Any], priors: Priors) -> str | None:
    """What a resumed study should be told when the priors its new trials are drawn from are not
    those it started with (recorded in its ``priors``): a ladder's target whose laws were
    fitted again on more rungs, or a scaletune whose published laws changed. None otherwise."""
    stored = attrs.get("priors")
    if not isinstance(stored, dict):
        return None
    now = priors.to_json()
    moved = []
    for name, prior in now.items():
        was = stored.get(name)
        if not (isinstance(prior, dict) and isinstance(was, dict) and "center" in prior):
            continue
        a, b = was.get("center"), prior["center"]
        if isinstance(a, (int, float)) and a > 0 and b > 0 and abs(math.log10(b / a)) > 1e-3:
            moved.append(f"{name} {a:.3g} -> {b:.3g}")
    if not moved:
        return None
    return (f"the priors' centers moved since this study started ({', '.join(moved)}): its new "
            "trials are drawn from the priors of now (a ladder's laws fitted again on more rungs, "
            "a fitted laws file written again, or another version of scaletune's laws); "
            "`scaletune show` lists those it started with")


def code_and_machine() -> dict[str, Any]:
    """What produced a study: code revision, library versions, machine."""
    import ray

    from scaletune.trainer.record import git_revision, installed_version

    return {
        "git_revision": git_revision(),
        "scaletune": installed_version("scaletune"),
        "python": sys.version.split()[0],
        "torch": installed_version("torch"),  # not torch.__version__: 1 s to import
        "optuna": optuna.__version__,
        "ray": ray.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
