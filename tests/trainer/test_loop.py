import importlib.metadata
import json
import math
import os
import re
import signal
import threading
import time
from collections import Counter

import pytest
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

from scaletune.trainer.checkpoint import CHECKPOINT
from scaletune.trainer.errors import SetupError
from scaletune.trainer.interrupt import DeferredInterrupt, Interrupted, PromptInterrupt
from scaletune.trainer.loop import GradNormStats, train
from scaletune.trainer.model import GPT
from scaletune.trainer.optim import build_optimizers
from scaletune.trainer.record import METRICS

STEP_TOKENS = 8 * 32  # the tiny config: batch 8 x block 32


def final_params(out_dir) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / CHECKPOINT, weights_only=True)["model"]


def test_accumulation_matches_the_full_batch(tiny, tmp_path):
    # SGD without clipping moves the weights by lr x gradient, so a wrongly scaled loss shows.
    optim = {"name": "sgd", "lr": 0.5, "grad_clip": None}
    full = train(tiny(steps=1, batch_size=32, optim=optim, out_dir=str(tmp_path / "full")))
    accum = train(tiny(steps=1, batch_size=32, micro_batch_size=8, optim=optim,
                       out_dir=str(tmp_path / "accum")))
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "accum")
    # The rule: 4 micro-batches of 8 give the gradient of one batch of 32, up to float rounding.
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    assert accum.history[0]["train_loss"] == pytest.approx(full.history[0]["train_loss"], rel=1e-5)
    assert accum.final_val_loss == pytest.approx(full.final_val_loss, rel=1e-5)


def test_same_seed_same_run_other_seed_other_run(tiny):
    cfg = tiny(steps=10, eval_every_tokens=5 * STEP_TOKENS, model={"dropout": 0.1})
    a, b = train(cfg), train(cfg)
    c = train(cfg.model_copy(update={"seed": 1}))
    losses = [[h["val_loss"] for h in r.history] for r in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_a_run_leaves_the_callers_random_numbers_as_they_were(tiny):
    # train() seeds torch (init, dropout): a notebook's next torch.rand drew the run's stream.
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    result = train(tiny(steps=3, model={"dropout": 0.1}))
    assert result.status == "completed"
    assert torch.equal(torch.get_rng_state(), before)


def test_huge_learning_rate_diverges_early_with_a_reason(tiny):
    result = train(tiny(steps=100, optim={"name": "sgd", "lr": 1e4, "grad_clip": None}))
    assert result.status == "diverged"
    assert re.fullmatch(
        r"(non-finite training loss|training loss above max_loss \S+ two steps in a row \(\S+, "
        r"\S+\)) at step (\d+) \(tokens (\d+)\)",
        result.reason,
    ), result.reason
    step, tokens = map(int, re.findall(r"\d+", result.reason.split(" at ")[1]))
    # The rule: it stops at once, and says where. The loss is read one step late; the step
    # queued after the diverged one is not counted as trained (it was, against the reason).
    assert tokens == step * STEP_TOKENS and step < 100
    assert (result.steps, result.tokens_seen) == (step, tokens)
    assert result.final_val_loss is None


def test_a_diverged_runs_metrics_log_is_strict_json(tiny, tmp_path):
    out = tmp_path / "run"
    # Stopped at its first step (weights so large the loss overflows): no gradient norm was
    # kept, their mean is NaN.
    result = train(tiny(steps=10, model={"init_std": 1e30}, out_dir=str(out)))
    assert (result.status, result.steps) == ("diverged", 1), result.reason

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    # Rule: a non-finite number is written as null; a bare NaN is refused by strict readers.
    events = [json.loads(line, parse_constant=refuse)
              for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "diverged"
    # No norm was measured: none is a max of 0 either, in the log or in the summary ("mean nan,
    # max 0", read as a zero gradient).
    assert events[-1]["grad_norm"]["max"] is None
    from scaletune.trainer.cli import summary
    said = summary(result)
    assert "grad norm       - (no step counted: the run ended at its first)" in said
    assert "nan" not in said


def test_max_loss_is_enforced(tiny):
    result = train(tiny(steps=10, max_loss=1.0))  # the first loss is ~ln(256) = 5.5
    assert result.status == "diverged"
    assert result.reason.startswith("training loss above max_loss 1 two steps in a row (5.5")
    assert result.steps == 2


def test_one_step_above_max_loss_is_not_a_divergence(tiny):
    # A quickstart trial (the best config, training seed 2) was ended as diverged at step 30 by
    # one step's loss, 8.64 against max_loss 8.32 (gradient norm 94), where the steps around it
    # were at 3.2-3.3; let run on, it ended at 2.06 (the search's best: 2.05).
    from scaletune.trainer.loop import _divergence

    assert _divergence(8.642, 94.0, 8.318, None) is None
    assert _divergence(8.9, 1.0, 8.318, 8.642) == (
        "training loss above max_loss 8.318 two steps in a row (8.642, 8.9)")
    # A run whose first loss (5.53) is above max_loss and its second (5.39) below trains on.
    result = train(tiny(steps=10, max_loss=5.45))
    assert result.status == "completed", result.reason


@pytest.mark.parametrize("answer", ["stop", False])
def test_report_can_stop_the_run(tiny, answer):
    seen = []

    def report(tokens, val_loss, metrics):
        seen.append((tokens, val_loss, metrics))
        return answer if len(seen) == 2 else None

    result = train(tiny(steps=20, eval_every_tokens=4 * STEP_TOKENS), report)
    assert result.status == "stopped" and "report" in result.reason
    assert [t for t, _, _ in seen] == [4 * STEP_TOKENS, 8 * STEP_TOKENS]
    assert result.steps == 8 and result.tokens_seen == 8 * STEP_TOKENS
    assert result.final_val_loss == seen[-1][1]
    assert {"train_loss", "lr", "grad_norm", "tokens_per_s", "step"} <= set(seen[0][2])


def test_report_sees_every_token_checkpoint_and_the_end(tiny):
    seen = []
    train(tiny(steps=10, tokens=10 * STEP_TOKENS - 5, eval_every_tokens=3 * STEP_TOKENS),
          lambda t, v, m: seen.append((t, m["target_tokens"])))
    assert seen == [(3 * STEP_TOKENS, 3 * STEP_TOKENS), (6 * STEP_TOKENS, 6 * STEP_TOKENS),
                    (9 * STEP_TOKENS, 9 * STEP_TOKENS), (10 * STEP_TOKENS, 10 * STEP_TOKENS - 5)]


def test_resume_continues_bit_for_bit(tiny, tmp_path):
    # Dropout and a data-order RNG both have to be restored for this to hold.
    common = {"steps": 20, "model": {"dropout": 0.1}, "eval_every_tokens": 10 * STEP_TOKENS,
              "checkpoint_every_tokens": 10 * STEP_TOKENS}
    straight = train(tiny(out_dir=str(tmp_path / "straight"), **common))
    cfg = tiny(out_dir=str(tmp_path / "resumed"), **common)
    first = train(cfg, lambda t, v, m: "stop")  # interrupted after 10 steps
    assert first.status == "stopped" and first.steps == 10
    second = train(cfg, resume=True)
    assert second.status == "completed" and second.steps == 20
    a, b = final_params(tmp_path / "straight"), final_params(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert second.history == straight.history
    assert second.final_val_loss == straight.final_val_loss
    # A resumed, finished run returns its result without training again.
    assert train(cfg, resume=True).history == straight.history


def test_a_resumed_run_says_where_it_picks_up(tiny, tmp_path, capsys):
    cfg = tiny(steps=20, out_dir=str(tmp_path / "run"), progress=True,
               eval_every_tokens=10 * STEP_TOKENS, checkpoint_every_tokens=10 * STEP_TOKENS)
    train(cfg, lambda t, v, m: "stop")  # stopped after 10 steps, its checkpoint written
    capsys.readouterr()
    assert train(cfg, resume=True).status == "completed"
    # Rule: one line before the steps: the step it continues at, of how many, and from where.
    assert (f"resuming at step 10 of 20 ({10 * STEP_TOKENS:,} tokens) from "
            f"{tmp_path / 'run' / CHECKPOINT}") in capsys.readouterr().err
    # Resumed once finished, it trains nothing and says so (its summary came as a new run's).
    assert train(cfg, resume=True).status == "completed"
    assert (f"--resume: the run in {tmp_path / 'run'} had finished (20 of 20 steps): nothing to "
            "train; its result is the one it ended with") in capsys.readouterr().err


def test_a_resumed_run_logs_each_evaluation_once(tiny, tmp_path):
    # Killed after an evaluation that came after its last checkpoint: the resumed run evaluates
    # it again, and the log held it twice (a plot drew both).
    common = {"steps": 20, "eval_every_tokens": 5 * STEP_TOKENS,
              "checkpoint_every_tokens": 10 * STEP_TOKENS}
    cfg = tiny(out_dir=str(tmp_path / "run"), **common)

    def killed_at_15(tokens, val_loss, metrics):
        if tokens == 15 * STEP_TOKENS:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        train(cfg, killed_at_15)
    log = tmp_path / "run" / METRICS
    evals = [json.loads(line)["step"] for line in log.read_text().splitlines()
             if json.loads(line)["event"] == "eval"]
    assert evals == [5, 10, 15]
    assert train(cfg, resume=True).status == "completed"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "eval"] == [5, 10, 15, 20]
    assert [r["event"] for r in records].count("start") == 2


def test_resume_without_a_checkpoint_says_it_starts_a_new_run(tiny, tmp_path, capsys):
    cfg = tiny(steps=4, out_dir=str(tmp_path / "typo"), progress=True)
    assert train(cfg, resume=True).status == "completed"
    assert (f"--resume: no checkpoint in {tmp_path / 'typo'} (no {CHECKPOINT} there): starting "
            "a new run") in capsys.readouterr().err


def test_a_repeated_call_keeps_the_finished_run(tiny, tmp_path):
    # A notebook cell run twice: the second call trained afresh over the finished run's
    # checkpoint, where `scaletune train` refuses.
    cfg = tiny(steps=4, out_dir=str(tmp_path / "run"))
    assert train(cfg).status == "completed"
    saved = (tmp_path / "run" / CHECKPOINT).read_bytes()
    with pytest.raises(SetupError, match=r"holds this config's run, finished: nothing is left to "
                                         r"train \(resume=True says so\); overwrite=True"):
        train(cfg)
    with pytest.raises(SetupError, match="exclude each other"):
        train(cfg, resume=True, overwrite=True)
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == saved
    assert train(cfg, overwrite=True).status == "completed"


def test_a_new_run_sets_aside_the_log_of_one_that_left_no_checkpoint(tiny, tmp_path, capsys):
    common = {"steps": 8, "eval_every_tokens": 4 * STEP_TOKENS}
    cfg = tiny(out_dir=str(tmp_path / "run"), progress=True, **common)

    def killed_at_4(tokens, val_loss, metrics):
        if tokens == 4 * STEP_TOKENS:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        train(cfg, killed_at_4)  # killed before any checkpoint: nothing to resume
    log = tmp_path / "run" / METRICS
    earlier = log.read_text()
    capsys.readouterr()
    # The new run's log followed the old one in one file: two starts, evaluations at step 4 twice.
    assert train(cfg).status == "completed"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in records].count("start") == 1
    assert [r["step"] for r in records if r["event"] == "eval"] == [4, 8]
    kept = tmp_path / "run" / "metrics.earlier-1.jsonl"
    assert kept.read_text() == earlier
    assert (f"the metrics log of an earlier run here, which left no checkpoint, is kept as {kept}"
            in capsys.readouterr().err)


def test_tensorboard_draws_each_evaluation_once_across_a_resume_and_a_restart(tiny, tmp_path):
    # Resumed from its checkpoint, the evaluations after it were drawn twice; started again
    # after a run that left no checkpoint, the earlier run's curve stayed beside the new one.
    def killed_at(step):
        def report(tokens, val_loss, metrics):
            if tokens == step * STEP_TOKENS:
                raise SystemExit("killed")
        return report

    run = tmp_path / "run"
    cfg = tiny(out_dir=str(run), steps=8, eval_every_tokens=2 * STEP_TOKENS,
               checkpoint_every_tokens=4 * STEP_TOKENS, tensorboard=True)
    with pytest.raises(SystemExit):
        train(cfg, killed_at(6))  # the checkpoint at step 4, evaluations at 2, 4 and 6 drawn
    # TensorBoard reads a folder's event files in the order of their names, which begin with
    # the second they were made in and end with a count of this process's writers: made in one
    # second, the tenth writer's file (".10") sorts before the ninth's (".9"), and the resume's
    # curve came first. A run resumed in the second it was killed in is this test's alone.
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.02)
    assert train(cfg, resume=True).status == "completed"
    assert steps_drawn(run / "tensorboard") == [2, 4, 6, 8]
    again = tmp_path / "again"
    fresh = tiny(out_dir=str(again), steps=8, eval_every_tokens=2 * STEP_TOKENS,
                 tensorboard=True)
    with pytest.raises(SystemExit):
        train(fresh, killed_at(4))  # no checkpoint: the next run starts over
    second = int(time.time())
    while int(time.time()) == second:  # as above
        time.sleep(0.02)
    assert train(fresh).status == "completed"
    assert steps_drawn(again / "tensorboard") == [2, 4, 6, 8]
    assert steps_drawn(again / "tensorboard.earlier-1") == [2, 4]


def steps_drawn(folder) -> list[int]:
    """The steps of the validation loss TensorBoard draws from ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.step // STEP_TOKENS for e in acc.Scalars("val_loss")]


def test_a_second_run_in_a_run_folder_is_refused_while_the_first_trains(tiny, tmp_path, capsys):
    import subprocess
    import sys

    import yaml

    from scaletune.search.cli import main

    cfg = tiny(steps=4, out_dir=str(tmp_path / "run"))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    # Another process holds the run: a first `scaletune train` (here, its lock alone).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from scaletune.trainer.runlock import run_lock\n"
         "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()",
         str(tmp_path / "run")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        for flags in ([], ["--resume"], ["--overwrite"]):
            assert main(["train", str(path), *flags]) == 2
            err = " ".join(capsys.readouterr().err.split())
            assert (f"out_dir {tmp_path / 'run'}: another scaletune train is training this run "
                    f"now (pid {holder.pid} on ") in err, err
        # Past the launcher's check too (a race): the run's own lock refuses it.
        with pytest.raises(SetupError, match="another scaletune train is training this run"):
            train(cfg)
    finally:
        holder.communicate("")
    # The lock ends with its process, however it ends.
    assert main(["train", str(path)]) == 0


def test_a_signal_during_an_evaluation_stops_the_run_after_its_checkpoint(tiny, tmp_path):
    # The signal arrives inside the report, as it may inside any write; the run still writes
    # that evaluation's checkpoint and stops before the next step. Signals reach the main thread.
    assert threading.current_thread() is threading.main_thread()
    common = {"steps": 20, "eval_every_tokens": 5 * STEP_TOKENS,
              "checkpoint_every_tokens": 5 * STEP_TOKENS}
    straight = train(tiny(out_dir=str(tmp_path / "straight"), **common))
    cfg = tiny(out_dir=str(tmp_path / "signalled"), **common)
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def report(tokens, val_loss, metrics):
        seen.append(tokens)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted) as stopped:
        train(cfg, report, interrupt=DeferredInterrupt())
    assert stopped.value.signum == signal.SIGTERM
    assert seen == [5 * STEP_TOKENS, 10 * STEP_TOKENS]
    assert signal.getsignal(signal.SIGTERM) is before
    ckpt = torch.load(tmp_path / "signalled" / CHECKPOINT, weights_only=True)
    assert ckpt["progress"]["step"] == 10
    resumed = train(cfg, resume=True)
    assert resumed.status == "completed" and resumed.history == straight.history


@pytest.mark.parametrize("kind", [DeferredInterrupt, PromptInterrupt])
def test_a_signal_in_the_set_up_stops_the_run_once_set_up_before_it_clears_anything(
        tiny, tmp_path, monkeypatch, kind):
    # torchrun passes a Ctrl-C on to ranks that are still setting up: raised at once, inside
    # an import torch's DDP makes lazily, it left a module half made and the rank ended on a
    # RecursionError. The signal now waits for the end of the set-up, and the run stops
    # before it writes or clears anything: the run that --overwrite would replace is kept.
    import scaletune.trainer.loop as loop

    cfg = tiny(steps=4, out_dir=str(tmp_path / "run"), checkpoint_every_tokens=2 * STEP_TOKENS)
    train(cfg)
    kept = (tmp_path / "run" / CHECKPOINT).read_bytes()
    set_up = []

    def signalled_wrap(*args, **kwargs):  # the DDP wrap (a model of its own for one process)
        os.kill(os.getpid(), signal.SIGINT)
        set_up.append(real(*args, **kwargs))  # reached only if the signal waited
        return set_up[-1]

    real = loop.data_parallel
    monkeypatch.setattr(loop, "data_parallel", signalled_wrap)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            train(cfg, overwrite=True, interrupt=kind())
    finally:
        signal.signal(signal.SIGINT, before)
    assert isinstance(stopped.value, Interrupted) and stopped.value.signum == signal.SIGINT
    assert len(set_up) == 1
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == kept


@pytest.mark.parametrize("kind", [DeferredInterrupt, PromptInterrupt])
def test_a_signal_as_the_data_is_prepared_stops_the_run_at_once(tiny, tmp_path, monkeypatch,
                                                                 kind):
    # The set-up waits with a signal for its end, but for the data's preparation: a corpus may
    # take minutes to tokenize, and a Ctrl-C there would have waited for it.
    import scaletune.trainer.loop as loop

    went_on = []

    def signalled_prepare(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        went_on.append(True)  # not reached: the signal raised at once
        return real(*args, **kwargs)

    real = loop.prepare_data
    monkeypatch.setattr(loop, "prepare_data", signalled_prepare)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted):
            train(tiny(steps=4), interrupt=kind())
    finally:
        signal.signal(signal.SIGINT, before)
    assert went_on == []


def test_a_signal_noted_as_a_rank_started_stops_it_where_its_run_takes_the_signals():
    # A rank notes a signal that comes as it imports the trainer (trainer.rank); the run's own
    # handling, entered later, stops on it instead of training on.
    before = signal.getsignal(signal.SIGTERM)
    with DeferredInterrupt() as starting:
        os.kill(os.getpid(), signal.SIGTERM)
        assert starting.requested
        with PromptInterrupt() as running:
            with pytest.raises(Interrupted) as stopped:
                running.prompt()
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_checkpoint_of_two_optimizers_resumes_by_name_or_by_position(tiny, tmp_path):
    # Under muon the run has two optimizers. A checkpoint keys their state by parameter name (so
    # that it does not depend on how processes shard the parameters); one written before that,
    # a list with one state per optimizer, resumes the same.
    common = {"steps": 8, "optim": {"name": "muon"}, "checkpoint_every_tokens": 4 * STEP_TOKENS}
    straight = train(tiny(out_dir=str(tmp_path / "straight"), **common))
    for name in ("by_name", "by_position"):
        cfg = tiny(out_dir=str(tmp_path / name), **common)
        train(cfg, lambda t, v, m: "stop")
        if name == "by_position":
            path = tmp_path / name / CHECKPOINT
            ckpt = torch.load(path, weights_only=True)
            model = GPT(cfg.model, 256)
            optimizers = build_optimizers(model, cfg.optim, torch.device("cpu"))
            set_optimizer_state_dict(model, optimizers, ckpt["optimizers"],
                                     options=StateDictOptions(full_state_dict=True))
            ckpt["optimizers"] = [opt.state_dict() for opt in optimizers]
            del ckpt["crc32"]  # those checkpoints carried no CRC either
            torch.save(ckpt, path)
        resumed = train(cfg, resume=True)
        assert resumed.history == straight.history
        assert resumed.final_val_loss == straight.final_val_loss


def test_resume_takes_a_lower_micro_batch(tiny, tmp_path):
    # A run resumed on fewer processes trains more sequences per process at once; the micro-batch
    # is what fits it in memory again, and the resume refused it as a changed config.
    common = {"steps": 20, "eval_every_tokens": 10 * STEP_TOKENS,
              "checkpoint_every_tokens": 10 * STEP_TOKENS}
    straight = train(tiny(out_dir=str(tmp_path / "straight"), **common))
    cfg = tiny(out_dir=str(tmp_path / "resumed"), **common)
    train(cfg, lambda t, v, m: "stop")  # stopped after 10 steps
    resumed = train(cfg.model_copy(update={"micro_batch_size": 2}), resume=True)
    assert resumed.status == "completed" and resumed.steps == 20
    # The same updates, summed in another order.
    assert resumed.final_val_loss == pytest.approx(straight.final_val_loss, rel=1e-5)


def test_a_resume_under_dropout_with_another_micro_batch_says_its_masks_differ(tiny, tmp_path,
                                                                               capsys):
    # Each micro-batch draws its own dropout masks: a resume with another micro-batch went on
    # with other masks (final loss 3.2626 against 3.2701 straight through), without a word,
    # where the README promises a resume bit for bit.
    cfg = tiny(steps=20, out_dir=str(tmp_path / "run"), progress=True, model={"dropout": 0.1},
               eval_every_tokens=10 * STEP_TOKENS, checkpoint_every_tokens=10 * STEP_TOKENS)
    train(cfg, lambda t, v, m: "stop")  # stopped after 10 steps
    capsys.readouterr()
    assert train(cfg.model_copy(update={"micro_batch_size": 2}), resume=True).steps == 20
    assert ("note: resumed with micro_batch_size None -> 2 under dropout: the masks are drawn "
            "per micro-batch") in capsys.readouterr().err


def test_resume_refuses_a_different_config(tiny, tmp_path):
    cfg = tiny(steps=4, out_dir=str(tmp_path / "run"))
    train(cfg)
    changed = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": 1e-3})})
    with pytest.raises(ValueError, match=r"optim\.lr"):
        train(changed, resume=True)


def test_resume_follows_moved_data_files_but_refuses_other_data(tiny, tmp_path, shakespeare):
    # The data is compared by content: a dataset file that moved is the same data.
    first = tmp_path / "a" / "input.txt"
    first.parent.mkdir()
    first.write_bytes(shakespeare.read_bytes())
    cfg = tiny(steps=8, eval_every_tokens=4 * STEP_TOKENS, out_dir=str(tmp_path / "run"), data={
        "source": "hf", "dataset": "text", "data_files": str(first), "path": None})
    assert train(cfg, lambda t, v, m: "stop").steps == 4  # stopped at the first of 2 evaluations
    moved = tmp_path / "b" / "input.txt"
    moved.parent.mkdir()
    first.rename(moved)
    at_new_place = cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_files": str(moved)})})
    assert train(at_new_place, resume=True).steps == 8
    moved.write_text(moved.read_text()[: len(moved.read_text()) // 2])  # other data
    # Rule: refused, with the two ways on (it named the two fingerprints alone).
    with pytest.raises(ValueError, match=r"trained on data .*: restore the data to resume, or "
                                         r"start the run afresh \(--overwrite"):
        train(at_new_place, resume=True)


def test_run_folder_has_metadata_evals_and_no_temporary_files(tiny, tmp_path):
    out = tmp_path / "run"
    result = train(tiny(steps=6, eval_every_tokens=2 * STEP_TOKENS, out_dir=str(out),
                        checkpoint_every_tokens=STEP_TOKENS))
    lines = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    start = lines[0]
    assert start["event"] == "start"
    assert start["config"]["model"]["n_layer"] == 2
    assert {"torch", "numpy", "python"} <= set(start["versions"]) and start["versions"]["torch"]
    # scaletune's own version too: outside a git checkout (a wheel) it is what names the code.
    assert start["versions"]["scaletune"] == importlib.metadata.version("scaletune")
    assert start["hardware"]["device"] == "cpu" and "git" in start
    events = Counter(line["event"] for line in lines)
    assert events == {"start": 1, "eval": 3, "checkpoint": 6, "end": 1}  # one each step
    assert [line["step"] for line in lines if line["event"] == "checkpoint"] == [1, 2, 3, 4, 5, 6]
    assert [line["val_loss"] for line in lines if line["event"] == "eval"] == [
        h["val_loss"] for h in result.history]
    # The lock file stays (trainer.runlock: removing it would race a run that opens it).
    assert sorted(p.name for p in out.iterdir()) == [".run.lock", CHECKPOINT, METRICS]


def test_result_reports_pre_clip_grad_norms_and_throughput(tiny):
    result = train(tiny(steps=12, optim={"grad_clip": 1e-3}))
    # The rule: the logged norm is measured before clipping, so it exceeds the clip value.
    assert result.grad_norm["mean"] > 1e-3 and result.history[-1]["grad_norm"] > 1e-3
    assert result.grad_norm["max"] >= result.grad_norm["mean"] > 0
    assert result.tokens_per_s > 0 and result.flops_per_s > 0 and result.mfu is None
    assert 0 < result.train_time_s < result.wall_time_s


def test_mfu_uses_the_peak_from_the_environment(tiny, monkeypatch):
    monkeypatch.setenv("SCALETUNE_PEAK_FLOPS", "1e12")
    result = train(tiny(steps=3))
    assert result.mfu == pytest.approx(result.flops_per_s / 1e12)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA GH200 480GB", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L40S", 362e12),
    ("NVIDIA L40", 181e12), ("NVIDIA L4", 121e12), ("NVIDIA GeForce RTX 4090", 165e12),
    ("Tesla V100-SXM2-32GB", None),
    # An H200 NVL was read as an SXM H200 (MFU 15% low), a GB200 as a B200 (11% high), and a MIG
    # slice against its whole GPU's peak.
    ("NVIDIA H200 NVL", 835e12), ("NVIDIA H200", 989e12), ("NVIDIA GB200", 2500e12),
    ("NVIDIA B200", 2250e12), ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", None),
    # Read by substring, an RTX A1000 was an A100 (312 TFLOP/s), and a laptop's RTX 4090 the
    # desktop card.
    ("NVIDIA RTX A1000 6GB Laptop GPU", None), ("NVIDIA RTX A1000", None),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
])
def test_a_gpus_bf16_peak_is_read_from_its_name_its_variant_first(monkeypatch, name, peak):
    # An H100 NVL was read as an SXM H100 (its MFU 15% low), and an L40S, L4, RTX 4090 had none.
    from scaletune.trainer.loop import peak_flops

    monkeypatch.delenv("SCALETUNE_PEAK_FLOPS", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops(torch.device("cuda", 0), torch.bfloat16) == peak
    assert peak_flops(torch.device("cuda", 0), torch.float32) is None  # bf16 peaks only


def test_grad_norm_spikes_count_against_the_running_median():
    stats = GradNormStats(window=20)
    for x in [1.0] * 15 + [2.5, 3.5, 1.0, 10.0]:
        stats.add(x)
    s = stats.summary()
    assert s["n_spikes"] == 2 and s["max"] == 10.0
    assert s["mean"] == pytest.approx(sum([1.0] * 16 + [2.5, 3.5, 10.0]) / 19)


def test_label_smoothing_raises_training_loss_only(tiny):
    plain = train(tiny(steps=5))
    smooth = train(tiny(steps=5, optim={"label_smoothing": 0.3}))
    # Same first step (same weights, same batch): smoothing adds to the training loss only.
    assert smooth.history[-1]["train_loss"] > plain.history[-1]["train_loss"] + 0.1
    assert abs(smooth.final_val_loss - plain.final_val_loss) < 0.2


def test_label_smoothing_with_a_padded_vocabulary_leaves_no_mass_on_the_padding(tiny):
    # The smoothed loss left the padding rows untrained (their logits near 0), and the
    # evaluation, over every logit, gave them mass: 3.79 against 3.49 unpadded, 60 steps.
    smooth = {"label_smoothing": 0.1}
    plain = train(tiny(steps=60, optim=smooth)).final_val_loss
    padded = train(tiny(steps=60, optim=smooth, model={"vocab_size": 320})).final_val_loss
    assert abs(padded - plain) < 0.05, (padded, plain)


def unigram_entropy_nats(data: bytes) -> float:
    counts = Counter(data)
    n = len(data)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def test_short_shakespeare_run_beats_the_unigram_entropy(tiny, shakespeare):
    entropy = unigram_entropy_nats(shakespeare.read_bytes())  # ~3.3 nats
    cfg = tiny(steps=150, model={"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64},
               batch_size=16, tokens=150 * 16 * 64, optim={"lr": 3e-3, "warmup_frac": 0.05})
    result = train(cfg)
    # The rule: a model that only learned letter frequencies scores the unigram entropy; using
    # context must do well below it.
    assert result.status == "completed"
    assert result.reason == "trained 153,600 tokens"  # as every count is printed: 150 * 16 * 64
    assert result.final_val_loss < entropy - 0.6, (result.final_val_loss, entropy)


def test_bf16_cpu_run_learns_and_records_its_attention_dtype(tiny, tmp_path):
    from scaletune.trainer.kernels import float32_attention

    out = tmp_path / "run"
    result = train(tiny(steps=10, dtype="bfloat16", out_dir=str(out)))
    start = json.loads((out / METRICS).read_text().splitlines()[0])
    assert start["hardware"]["dtype"] == "bfloat16"
    assert start["hardware"]["attention"] == ("float32" if float32_attention() else "bfloat16")
    assert result.status == "completed"
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_dtype_auto_takes_bfloat16_only_where_the_gpu_computes_in_it(monkeypatch):
    # torch's is_bf16_supported() counts a GPU that emulates bf16 (V100, T4): dtype auto trained
    # there in emulated bf16, far slower than float32. No GPU here: torch answers as such a GPU.
    from scaletune.trainer.loop import _dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)  # a V100
    assert _dtype("auto", torch.device("cuda")) == torch.float32
    assert _dtype("bfloat16", torch.device("cuda")) == torch.bfloat16  # asked for: as asked
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert _dtype("auto", torch.device("cuda")) == torch.bfloat16  # an A100 or later
    assert _dtype("auto", torch.device("cpu")) == torch.float32


@pytest.mark.parametrize(("saved", "device", "restored"), [
    (["own"], 3, "own"),  # this version: the state of the device it ran on
    (["gpu0", "gpu1"], 1, "gpu1"),  # every visible GPU's, by an older version: its own
    (["gpu0", "gpu1"], 0, "gpu0"),
    (["gpu0", "gpu1"], 4, None),  # more GPUs visible now than then: none to restore
])
def test_a_checkpoints_cuda_rng_resumes_where_other_gpus_are_visible(monkeypatch, saved, device,
                                                                     restored):
    # Every visible GPU's state was saved and restored: resumed where fewer GPUs are visible
    # (a one-GPU allocation, a smaller node), torch's set_rng_state_all failed with IndexError.
    from scaletune.trainer.checkpoint import _set_cuda_rng

    calls = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: device)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, dev: calls.append((state, dev)))
    _set_cuda_rng(saved)
    assert calls == ([] if restored is None else [(restored, device)])


def test_a_config_changed_in_python_is_checked_as_a_files_is(tiny, tmp_path):
    # model_copy(update=...) validates nothing: tokens 0 said "--resume: the run in None had
    # finished" and returned a run still 'running'; batch_size 0 was a ZeroDivisionError; a
    # misspelt key was dropped without a word.
    from scaletune.trainer.errors import ConfigError

    cfg = tiny(steps=2, out_dir=str(tmp_path / "run"))
    for update, said in (({"tokens": 0}, "tokens: must be >= 1 (got 0)"),
                         ({"batch_size": 0}, "batch_size: must be >= 1 (got 0)"),
                         ({"eval_every_tokens": -1}, "eval_every_tokens: must be >= 1 (got -1)"),
                         ({"tokenz": 5}, "tokenz: unknown key"),
                         ({"model": cfg.model.model_copy(update={"n_layerz": 1})},
                          "model.n_layerz: unknown key")):
        with pytest.raises(ConfigError) as err:
            train(cfg.model_copy(update=update))
        assert err.value.errors[0].startswith(said), err.value.errors
    with pytest.raises(TypeError, match="train: report takes a function report"):
        train(cfg, report=5)  # it trained to the first evaluation, then failed
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # A change that makes a valid config trains it; the fields it was given stay the given ones.
    result = train(cfg.model_copy(update={"tokens": 4 * 8 * 32}))
    assert (result.status, result.tokens_seen) == ("completed", 4 * 8 * 32)
