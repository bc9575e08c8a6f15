"""Each rung of the suite's 18 ladders against what its data's token frequencies alone score.

The rungs are ladder_v5_prior's (1/16, 1/8 and 1/4 of the target's tokens, 8 trials each), run
again by run_rungs.py into ROOT (their studies are not kept in git); this reads their studies,
computes each rung's unigram loss (``trainer.data.unigram_loss``, as `scaletune run` records it
now), records it in the rung's study as a run would, and prints each rung's best loss against it
and whether ``search.fit.frequencies_warning`` warns.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/table.py /tmp/rungs > table.txt
"""

import optuna
from common import ladders, root

from scaletune.search.fit import frequencies_warning
from scaletune.search.ladder import stored_study
from scaletune.search.studies import UNIGRAM
from scaletune.trainer.data import prepare_data, unigram_loss

warned = total = 0
print("task             seed  rung (tokens)  best loss  unigram  best vs unigram  warns")
for task, seed, ladder in ladders(root()):
    for rung in ladder.rungs:
        cfg = rung.cfg
        study = stored_study(cfg)
        done = [t.value for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
        data = prepare_data(cfg.data, cfg.model.block_size)
        unigram = unigram_loss(data, cfg.model.block_size, cfg.data.val_windows)
        study.set_user_attr(UNIGRAM, unigram)
        if not done:
            print(f"{task:16s} {seed:4d}  {cfg.tokens_per_trial:13,d}  (no trial completed)")
            continue
        best = min(done)
        warns = frequencies_warning([(cfg.name, cfg.tokens_per_trial, best, unigram)]) is not None
        warned += warns
        total += 1
        print(f"{task:16s} {seed:4d}  {cfg.tokens_per_trial:13,d}  {best:9.4f}  "
              f"{unigram:7.4f}  {best / unigram - 1:+15.1%}  {'yes' if warns else ''}")
print(f"\n{warned} of {total} rungs with a completed trial warn")
