"""Ten user attrs of a running trial written on PostgreSQL: one by one through Optuna's
RDBStorage, and in one ``Storage.batch()``; wall and CPU per trial, three rounds of 30 trials.

    eval "$(bash tests/postgres.sh start)"; python benchmarks/results/driver_scale_v5/writes.py
"""

import os
import time

import optuna

from scaletune.search.storage import batch, make_storage, with_driver

optuna.logging.set_verbosity(optuna.logging.WARNING)
url = os.environ["SCALETUNE_TEST_POSTGRES_URL"]
storages = {"optuna, one by one": optuna.storages.RDBStorage(with_driver(url)),
            "Storage.batch()": make_storage(url)}
for round_ in range(3):
    for name, storage in storages.items():
        study = optuna.create_study(storage=storage, study_name=f"writes-{time.time()}")
        wall = cpu = 0.0
        for _ in range(30):
            trial = study.ask()
            t, c = time.perf_counter(), time.thread_time()
            with batch(study._storage) if name == "Storage.batch()" else open(os.devnull):
                for k in range(10):
                    trial.set_user_attr(f"k{k}", k * 1.5)
            wall += time.perf_counter() - t
            cpu += time.thread_time() - c
        assert storage.get_trial(trial._trial_id).user_attrs["k9"] == 13.5
        print(f"round {round_ + 1}: {name}: 10 user attrs in {wall / 30 * 1e3:.1f} ms, "
              f"CPU {cpu / 30 * 1e3:.1f} ms", flush=True)
