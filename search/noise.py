"""The noise between training seeds: re-run a study's best config with other seeds, and measure.

Two runs of one config that differ only in their training seed (init, data order, dropout) end at
different losses. Below that spread a search cannot tell configs apart, and a pruner that stops
a trial for being worse by less is stopping it on noise. ``scaletune run STUDY.yaml
--repeat-best N`` queues N repeats of the best trial, each with a training seed its config has
not used; they run as trials of the study (never pruned) and the report shows what they measure.
The predicted-final-loss pruner's default floor (``noise_floor: auto``) is read from them.

A repeat is a trial with user attrs ``repeat_of`` (the number of the trial it repeats, the first
of its config) and ``train_seed``; a trial without ``train_seed`` trained with the study's seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaletune.search.config import NOISE_FLOOR
from scaletune.trainer.errors import SetupError

REPEAT_OF = "repeat_of"
TRAIN_SEED = "train_seed"


@dataclass(frozen=True)
class SeedGroup:
    """One config's complete runs under different training seeds."""

    trial: int
    """The first trial of the config (the one repeated)."""
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    """Final losses, in the order of ``seeds``."""
    lost: tuple[tuple[int, str], ...] = ()
    """(seed, how it ended: 'diverged' or 'failed') of each run of the config that has no final
    loss: its mean and spread leave them out, and a seed that diverged says the config is less
    safe than its losses show."""

    def runs_said(self) -> str:
        """'2.0000 (seed 0), 2.0500 (seed 1), mean 2.0250', then '; seed 2 diverged' for each
        lost run."""
        runs = ", ".join(f"{v:.4f} (seed {s})" for s, v in zip(self.seeds, self.values,
                                                                strict=True))
        return (f"{runs}, mean {statistics.fmean(self.values):.4f}"
                + "".join(f"; seed {seed} {how}" for seed, how in self.lost))

    @property
    def spread(self) -> float:
        """(worst - best) / best."""
        return (max(self.values) - min(self.values)) / min(self.values)


def seed_of(trial: FrozenTrial, study_seed: int = 0) -> int:
    """The training seed ``trial`` ran with: a repeat's own, else the study's."""
    return int(trial.user_attrs.get(TRAIN_SEED, study_seed))


def root(trial: FrozenTrial) -> int:
    """The number of the first trial of ``trial``'s config: itself unless it is a repeat."""
    return int(trial.user_attrs.get(REPEAT_OF, trial.number))


def seed_groups(trials: Iterable[FrozenTrial], study_seed: int = 0) -> list[SeedGroup]:
    """The configs of ``trials`` that were repeated, each with its complete runs (seed, final
    loss); groups with fewer than two complete runs are left out."""
    from scaletune.search.summary import diverged

    runs: dict[int, list[tuple[int, float]]] = {}
    lost: dict[int, list[tuple[int, str]]] = {}
    repeated = set()
    for t in trials:
        if REPEAT_OF in t.user_attrs:
            repeated.add(root(t))
        seed = seed_of(t, study_seed)
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
            runs.setdefault(root(t), []).append((seed, float(t.value)))
        elif diverged(t) or (t.state == TrialState.FAIL and not t.user_attrs.get("retried")):
            lost.setdefault(root(t), []).append((seed, "diverged" if diverged(t) else "failed"))
    groups = []
    for number in sorted(repeated):
        pairs = sorted(runs.get(number, []))
        if len(pairs) >= 2:
            seeds, values = zip(*pairs, strict=True)
            groups.append(SeedGroup(number, seeds, values, tuple(sorted(lost.get(number, [])))))
    return groups


def seeds_note(trials: list[FrozenTrial], chosen: FrozenTrial, study_seed: int = 0) -> str | None:
    """What the other training seeds of ``chosen``'s config scored, where it was repeated (run
    --repeat-best): the best of several seeds is the config and a lucky seed. None otherwise."""
    group = next((g for g in seed_groups(trials, study_seed) if g.trial == root(chosen)), None)
    if group is None:
        return None
    which = (f"trial {chosen.number} repeats trial {group.trial}'s config with training seed "
             f"{seed_of(chosen, study_seed)}; " if chosen.number != group.trial
             else "")
    return (f"{which}the config ran with {len(group.values)} training seeds: "
            f"{group.runs_said()}: one seed's loss is partly luck, so expect the final run near "
            "the mean (it trains with the seed of this trial)")


def measured_floor(groups: Iterable[SeedGroup]) -> float | None:
    """Twice the pooled relative standard deviation of final loss between seeds (each group's
    deviations taken from its own mean), the noise floor the repeats measure; None without a
    repeated config. Two standard deviations: what NOISE_FLOOR is for its three seeds."""
    squares, dof = 0.0, 0
    for g in groups:
        mean = statistics.fmean(g.values)
        squares += sum(((v - mean) / mean) ** 2 for v in g.values)
        dof += len(g.values) - 1
    return 2 * math.sqrt(squares / dof) if dof else None


def noise_floor(trials: Iterable[FrozenTrial], study_seed: int = 0) -> tuple[float, str]:
    """The floor ``noise_floor: auto`` uses, and where it comes from: what the study's repeats
    measure, but never below NOISE_FLOOR (two or three seeds measure a spread loosely, and a
    floor set too low stops trials on noise); NOISE_FLOOR when nothing was repeated."""
    return floor_of(seed_groups(trials, study_seed))


def floor_of(groups: list[SeedGroup]) -> tuple[float, str]:
    """``noise_floor`` of the seed groups ``seed_groups`` found."""
    measured = measured_floor(groups)
    if measured is None:
        return NOISE_FLOOR, "the default (no repeats of a config with other training seeds yet)"
    runs = sum(len(g.values) for g in groups)
    where = f"measured on {runs} runs of {len(groups)} config(s): {measured:.2%}"
    if measured < NOISE_FLOOR:
        return NOISE_FLOOR, f"{where}, below the default {NOISE_FLOOR:.0%}, which is kept"
    return measured, where


def best_of(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The best complete trial, None where there is none."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return min(complete, key=lambda t: t.value) if complete else None


def best_to_repeat(name: str, trials: Iterable[FrozenTrial]) -> FrozenTrial:
    """The best complete trial of study ``name``; SetupError when there is none."""
    if (best := best_of(trials)) is None:
        raise SetupError(f"--repeat-best: study {name!r} has no complete trial to repeat yet; "
                         "run it first")
    return best


def waiting_repeats(trials: Iterable[FrozenTrial], first: int) -> list[FrozenTrial]:
    """The repeats of trial ``first``'s config queued and not yet run (a launch stopped before
    them, or that stopped them and queued them again)."""
    return [t for t in trials if t.state == TrialState.WAITING
            and t.user_attrs.get(REPEAT_OF) == first]


def queue_repeats(study: optuna.Study, n: int, study_seed: int = 0) -> tuple[int, list[int]]:
    """Have ``n`` repeats of the study's best complete trial run, each with a training seed its
    config has not used: those an earlier launch queued and did not run count among them (the
    same command run again after Ctrl-C ran twice the repeats asked for), and the rest are
    queued; returns the repeated trial's number and the seeds that run (more than ``n`` where
    an earlier launch queued more).

    Raises SetupError when the study has no complete trial.
    """
    trials = study.get_trials(deepcopy=False)
    best = best_to_repeat(study.study_name, trials)
    first = root(best)
    waiting = [seed_of(t, study_seed) for t in waiting_repeats(trials, first)]  # all run, more than n or not
    used = {seed_of(t, study_seed) for t in trials
            if root(t) == first and t.state != TrialState.FAIL}
    seeds, seed = [], study_seed
    while len(waiting) + len(seeds) < n:
        seed += 1
        if seed not in used:
            seeds.append(seed)
    for s in seeds:
        study.enqueue_trial(best.params, user_attrs={REPEAT_OF: first, TRAIN_SEED: s},
                            skip_if_exists=False)
    return first, waiting + seeds


def n_repeats(trials: Iterable[FrozenTrial]) -> int:
    """Repeats that count on top of the study's n_trials: all but those that failed and were
    queued again (their re-run is counted instead). One that failed for good counts, as it
    counts as finished: left out, the search came up one trial short of n_trials."""
    from scaletune.search.plan import failed_for_good  # plan imports this module

    return sum(REPEAT_OF in t.user_attrs
               and (t.state != TrialState.FAIL or failed_for_good(t)) for t in trials)


def finished_repeats(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The repeats that count as finished trials (search.plan.n_finished counts them too)."""
    from scaletune.search.plan import FINISHED, failed_for_good  # plan imports this module

    return [t for t in trials if REPEAT_OF in t.user_attrs
            and (t.state in FINISHED or failed_for_good(t))]


def finished_of(trials: list[FrozenTrial], done: int, n_trials: int) -> str:
    """``8/10 trials finished``, with ``(n_trials 8 and 2 repeats of the best)`` where repeats
    (--repeat-best) are among the trials asked: "10/10" read as a study that asks for 10."""
    total = trials_asked(trials, n_trials)
    repeats = n_repeats(trials)
    said = f"{done}/{total} trials finished"
    if repeats:
        said += (f" ({total - repeats} of the search and {repeats} repeat"
                 f"{'s' if repeats != 1 else ''} of the best with other seeds)")
    elif total > n_trials:  # "5/5" read as a study that asks for 5, with n_trials lowered to 2
        said += f" (n_trials {n_trials}: an earlier launch ran more)"
    return said


def trials_asked(trials: list[FrozenTrial], n_trials: int) -> int:
    """The finished trials a launch runs the study to: ``n_trials`` of the search, or the
    searched trials it has finished where an earlier launch ran more (``--n-trials``), plus the
    repeats. Repeats come on top of what the search has done: counted on top of n_trials alone,
    a study past its n_trials ran fewer repeats than were queued and left the rest waiting."""
    from scaletune.search.plan import FINISHED, failed_for_good

    finished = sum(t.state in FINISHED or failed_for_good(t) for t in trials)
    searched = finished - len(finished_repeats(trials))
    return max(n_trials, searched) + n_repeats(trials)
