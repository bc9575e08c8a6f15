"""The suite's leave-one-task-out check, on a calibration table written by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.suite import loto_shift, published_center
from scaletune.heuristics.priors import (
    SHORT_RUN_LR_SHIFT_LOG10,
    SHORT_RUN_TAU_SHIFT_LOG10,
    ModelShape,
    priors_for,
)


def test_the_shift_for_a_task_is_fitted_on_the_other_tasks_only():
    calib = pd.DataFrame({
        "param": ["tau"] * 4,
        "task": ["a", "b", "c", "d"],
        "gap_published": [2.0, 1.0, 3.0, -2.0],
        "sigma": [0.5] * 4,
        "correction": [1.8] * 4,
    })
    loto = loto_shift(calib).set_index("task")
    # Task a's shift is the mean over b, c and d: (1 + 3 - 2) / 3.
    assert loto.loc["a", "shift"] == pytest.approx(2 / 3)
    assert loto.loc["a", "abs_gap_after"] == pytest.approx(abs(2.0 - 2 / 3))
    # d lies 2 dex below the others' mean of 2: its held-out gap grows, and the table says so.
    assert loto.loc["d", "shift"] == pytest.approx(2.0)
    assert loto.loc["d", "abs_gap_after"] == pytest.approx(4.0)
    assert not loto.loc["d", "in_2sigma_after"]
    assert loto["applied"].eq(1.8).all()
    # A hyperparameter seen on fewer than three tasks is not fitted.
    assert loto_shift(calib.iloc[:2]).empty


def test_the_published_center_undoes_the_short_run_correction():
    tiny = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
    p = priors_for(tiny, 2e6)
    assert published_center(p.lr) == pytest.approx(p.lr.center / 10**SHORT_RUN_LR_SHIFT_LOG10)
    assert published_center(p.tau) == pytest.approx(p.tau.center / 10**SHORT_RUN_TAU_SHIFT_LOG10)
    assert published_center(p.batch_size) == p.batch_size.center  # never corrected


def test_an_analysis_of_no_studies_leaves_the_tables_there(tmp_path):
    from benchmarks.suite import TASKS, analyze_suite, bench_of

    # A checkout holds the tables and not the studies (*.db is ignored): `--analyze-only` wrote
    # an empty suite.md and three one-byte CSVs over the committed ones, and exited 0.
    task = next(t for t in TASKS if t.name == "shakespeare-byte")
    bench = bench_of(task, tmp_path, budget=2, tpe_budget=3, seeds=1, workers=1,
                     strategies=("random",))
    tables = {name: f"{name} of record\n" for name in (
        "suite.md", "suite_summary.csv", "suite_calibration.csv", "suite_loto.csv")}
    for name, text in tables.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit) as e:
        analyze_suite([task], [bench], tmp_path, "smoke")
    assert "no task has finished trials under" in str(e.value)
    assert "the tables there are left as they are" in str(e.value)
    assert {name: (tmp_path / name).read_text() for name in tables} == tables


def test_a_task_on_a_text_file_of_ones_own_is_one_line(tmp_path, monkeypatch, capsys):
    from benchmarks import suite

    text = tmp_path / "mine.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 200)
    task = suite.Task("mine-bpe", str(text), 260, 1, 2, 32, 32, 0.125, "a corpus of my own")
    bench = suite.bench_of(task, tmp_path / "out", budget=2, seeds=1, workers=1)
    # Read in place, named by its file; its BPE lands in the results' corpora/, not beside it.
    assert bench.data == text and bench.corpus == "mine.txt" == task.corpus_label
    tokenizer = Path(bench.tokenizer)
    assert tokenizer.parent == tmp_path / "out" / "corpora"
    assert re.fullmatch(r"mine-[0-9a-f]{8}-bpe260\.json", tokenizer.name), tokenizer.name
    # Another corpus of the same file name, in another folder, gets a tokenizer of its own
    # (both had mine-bpe260.json, trained on whichever was built last). A vocabulary of
    # 260: these repeated lines give a BPE of 272 tokens at most (a larger one is refused).
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.txt").write_text("To be, or not to be: that is the question.\n" * 200)
    twin = suite.Task("twin-bpe", str(tmp_path / "sub" / "mine.txt"), 260, 1, 2, 32, 32, 0.125, "")
    other = Path(suite.bench_of(twin, tmp_path / "out", budget=2, seeds=1, workers=1).tokenizer)
    assert other != tokenizer and tokenizer.read_text() != other.read_text()
    # A task whose file is not there is refused before anything runs (each study failed with a
    # traceback), as is Tiny Shakespeare missing beside the checkout.
    gone = suite.Task("gone-byte", str(tmp_path / "gone.txt"), 0, 1, 2, 32, 32, 0.125, "")
    monkeypatch.setattr(suite, "TASKS", (*suite.TASKS, task, gone))
    monkeypatch.setattr(suite, "TASK_NAMES", (*suite.TASK_NAMES, "mine-bpe", "gone-byte"))
    with pytest.raises(SystemExit) as e:
        suite.main(["--tasks", "mine-bpe,gone-byte", "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"gone-byte reads {tmp_path / 'gone.txt'}: file not found" in err
    assert "mine-bpe" not in err.split("error:")[1]
    monkeypatch.setattr(suite.se, "DEFAULT_DATA", tmp_path / "no-shared" / "tinyshakespeare.txt")
    assert "shakespeare-byte reads " in suite.missing_data(list(suite.TASKS))
    # The Tiny Shakespeare hint is for its file alone.
    assert "Tiny Shakespeare" in suite.missing_data(list(suite.TASKS))
    assert "Tiny Shakespeare" not in suite.missing_data([gone])
    # A misspelt corpus key was read as a file of that name in the current folder.
    typo = suite.Task("typo-byte", "shakespear", 0, 1, 2, 32, 32, 1, "")
    assert ("file not found (a corpus is a file's path or one of shakespeare, pydoc, docstrings, "
            "stdlib_code)") in suite.missing_data([typo])
    assert "one of shakespeare" not in suite.missing_data([gone])
    assert "one of shakespeare" not in suite.missing_data(list(suite.TASKS))  # the key is right


def test_a_bad_task_line_is_refused_by_field_before_anything_runs(tmp_path, monkeypatch, capsys):
    from benchmarks import ladder_suite, seed_noise, suite

    text = tmp_path / "mine.txt"
    text.write_text("some text of my own\n" * 500)
    # A vocabulary below the byte alphabet ran as 257 tokens while the tables said 100; a
    # horizon of 0 and heads that do not divide the width were tracebacks.
    bad = [suite.Task("small-bpe", str(text), 100, 1, 2, 32, 32, 1, ""),
           suite.Task("flat", str(text), 0, 1, 2, 32, 32, 0, ""),
           suite.Task("odd-heads", str(text), 0, 1, 4, 66, 32, 1, ""),
           suite.Task("bad/name", str(text), 0, 1, 2, 32, 32, 1, "")]
    good = suite.Task("mine-byte", str(text), 0, 1, 2, 32, 32, 1, "")
    monkeypatch.setattr(suite, "TASKS", (*suite.TASKS, *bad, good))
    monkeypatch.setattr(suite, "TASK_NAMES", tuple(t.name for t in suite.TASKS))
    said = suite.task_problems([*bad, good])
    for part in ("small-bpe: bpe_vocab 100: 0 (bytes) or a BPE vocabulary of at least 257",
                 "flat: horizon 0: tokens per trial in multiples of 163,840, more than 0",
                 "odd-heads: model: n_head must divide n_embd, got n_embd=66, n_head=4",
                 "bad/name: name 'bad/name': a folder's name"):
        assert part in said, said
    assert "mine-byte" not in said and suite.task_problems([good]) is None
    # A horizon above 0 that rounds to less than one window was the same traceback.
    tiny = suite.Task("tiny-byte", str(text), 0, 1, 2, 32, 32, 1e-6, "")
    assert ("tiny-byte: horizon 1e-06: 0 tokens per trial, less than one window of block_size "
            "32") in suite.task_problems([tiny])
    assert suite.task_problems([suite.Task("short", str(text), 0, 1, 2, 32, 32, 0.125, "")]) is None
    for main, argv in ((suite.main, ["--strategies", "random"]), (ladder_suite.main, []),
                       (seed_noise.main, [])):
        out = tmp_path / "out"
        with pytest.raises(SystemExit) as e:
            main(["--tasks", "small-bpe,mine-byte", "--out", str(out), *argv])
        assert e.value.code == 2
        assert "small-bpe: bpe_vocab 100" in " ".join(capsys.readouterr().err.split())
        assert not out.exists()
    # A task of few tokens for its block gets batches from 1 (they were 0.5 and up).
    assert suite.batch_choices(4_096, 64) == (1, 2, 4, 8)


def test_a_bpe_is_trained_once_per_corpus_and_again_when_the_text_changes(tmp_path, monkeypatch,
                                                                          shakespeare):
    # Every run trained the task's BPE again (14-23 s on a 32 MB corpus), --analyze-only too.
    import tokenizers

    from benchmarks import suite

    play_text = shakespeare.read_text()[:60_000]
    corpus = tmp_path / "mine.txt"
    corpus.write_text(play_text)
    first = suite.bpe_file(str(corpus), 300, tmp_path / "out")
    trained = first.read_text()
    calls = []
    real = tokenizers.Tokenizer.train_from_iterator
    monkeypatch.setattr(tokenizers.Tokenizer, "train_from_iterator",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    assert suite.bpe_file(str(corpus), 300, tmp_path / "out") == first and calls == []
    assert first.read_text() == trained
    # Other text, or another vocabulary: trained again, to another file.
    corpus.write_text(play_text[: len(play_text) // 2])
    assert suite.bpe_file(str(corpus), 300, tmp_path / "out") == first and calls == [1]
    assert first.read_text() != trained
    assert suite.bpe_file(str(corpus), 280, tmp_path / "out") != first and calls == [1, 1]
    # A vocabulary the text cannot fill ran at the size it learned (932 of 2,048 on 3 kB),
    # its tables saying 2,048.
    corpus.write_text(play_text[:3000])
    with pytest.raises(SystemExit, match=r"bpe_vocab 2048 of corpus .*mine.txt: a BPE trained "
                                         r"on it learns [\d,]+ tokens"):
        suite.bpe_file(str(corpus), 2048, tmp_path / "out")
