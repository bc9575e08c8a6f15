"""The registry of searched hyperparameters: a sixth one is one entry, and a study searches it."""

from __future__ import annotations

import optuna
import pytest

from scaletune.heuristics.priors import Prior
from scaletune.search import hparams
from scaletune.search.cli import main
from scaletune.search.config import load_study, validate_study
from scaletune.search.hparams import HParam
from scaletune.search.plan import SearchPlan, train_trial
from scaletune.search.storage import make_storage
from scaletune.trainer.errors import ConfigError
from tests.search.helpers import tiny_study, write_study

BETA2_PRIOR = Prior(name="beta2", center=0.95, low=0.9, high=0.99, log=False, sigma=0.02)


@pytest.fixture
def beta2(monkeypatch):
    """Adam's beta2 registered for this test only, with a prior of its own."""
    monkeypatch.setitem(hparams.HPARAMS, "beta2", HParam(
        "beta2", target="optim.beta2", label="Adam beta2", unit="", low=0.5, high=0.9999,
        allowed="a beta2 in [0.5, 0.9999]", prior=lambda priors: BETA2_PRIOR, default=None,
    ))


def test_the_five_are_registered_in_search_order():
    assert [hp.name for hp in hparams.searchable()] == [
        "lr", "weight_decay", "dropout", "warmup_frac", "batch_size"]
    # Weight decay is searched as tau unless the study says lambda; both set one trainer field.
    wd = hparams.HPARAMS["weight_decay"]
    assert hparams.form_for(wd, None).name == "tau"
    assert hparams.form_for(wd, "lambda") is wd
    assert hparams.HPARAMS["tau"].target == wd.target == "optim.weight_decay"


def test_register_refuses_a_target_the_trainer_does_not_have(monkeypatch):
    monkeypatch.setattr(hparams, "HPARAMS", dict(hparams.HPARAMS))
    with pytest.raises(ValueError, match="unknown trainer field 'beta3'"):
        hparams.register(HParam("beta3", target="optim.beta3", label="", unit="", low=0, high=1,
                                allowed="x"))
    with pytest.raises(ValueError, match="already registered"):
        hparams.register(hparams.HPARAMS["lr"])
    # An empty name was registered, then named by the next entry's clash ("already set by ''").
    with pytest.raises(ValueError, match="'' cannot name a hyperparameter: a name is a key"):
        hparams.register(HParam("", target="optim.beta1", label="", unit="", low=0, high=1,
                                allowed="x"))
    # A range on a field of names: each trial drew 0.55 and failed; on a field of whole numbers
    # not registered whole: 1.55 layers.
    with pytest.raises(ValueError, match="target 'model.norm' holds no numbers"):
        hparams.register(HParam("norm", target="model.norm", label="", unit="", low=0, high=1,
                                allowed="x"))
    with pytest.raises(ValueError, match="target 'model.n_layer' holds whole numbers: give "
                                         "whole=True"):
        hparams.register(HParam("layers", target="model.n_layer", label="", unit="", low=1,
                                high=8, allowed="x"))
    assert not {"", "norm", "layers"} & set(hparams.HPARAMS)
    # Whole numbers alone and in a union with None (micro_batch_size read as no numbers).
    assert [hparams.field_numbers(f) for f in ("model.n_layer", "micro_batch_size", "optim.lr",
                                                 "model.vocab_size", "model.norm")] == [
        int, int, float, int, None]


def test_register_refuses_a_second_entry_of_one_field_and_auto_without_a_prior(monkeypatch):
    monkeypatch.setattr(hparams, "HPARAMS", dict(hparams.HPARAMS))
    # Both drawn, the later one trained: the recorded lr was not what trained.
    with pytest.raises(ValueError, match="target 'optim.lr' is already set by 'lr'"):
        hparams.register(HParam("peak_lr", target="optim.lr", label="", unit="", low=0, high=1,
                                allowed="x", prior=lambda p: p.lr))
    # default 'auto' searches it with a prior it has not: an AssertionError from every command.
    with pytest.raises(ValueError, match="default 'auto' searches it with its prior"):
        hparams.register(HParam("beta2", target="optim.beta2", label="", unit="", low=0.5,
                                high=0.9999, allowed="x"))


def test_a_registered_whole_number_or_priorless_entry_and_a_wide_prior(tmp_path, shakespeare,
                                                                       monkeypatch):
    from scaletune.search.plan import SearchPlan

    monkeypatch.setitem(hparams.HPARAMS, "n_layer", HParam(
        "n_layer", target="model.n_layer", label="layers", unit="", low=1, high=12, whole=True,
        allowed="1 to 12 layers", default=None))
    monkeypatch.setitem(hparams.HPARAMS, "beta2", HParam(
        "beta2", target="optim.beta2", label="Adam beta2", unit="", low=0.5, high=0.9999,
        allowed="a beta2 in [0.5, 0.9999]", default=None,
        prior=lambda _: Prior(name="beta2", center=0.99, low=0.9, high=1.3, log=False, sigma=0.1)))
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"] |= {"n_layer": {"low": 1, "high": 3}, "beta2": {"prior": "auto"}}
    dims = {d.name: d.distribution for d in SearchPlan.build(validate_study(raw)).dims}
    # Drawn as a float (2.0976 layers), its first trial failed and the study stopped.
    assert dims["n_layer"] == optuna.distributions.IntDistribution(1, 3)
    # A prior's range beyond the values a study may give: beta2=1.19 stopped the study.
    assert dims["beta2"] == optuna.distributions.FloatDistribution(0.9, 0.9999)
    # The priors and the compute take the model a registered n_layer sets, not the file's.
    from scaletune.search.space import largest_shape, model_shape

    cfg = validate_study(raw)
    assert largest_shape(cfg, 256).n_layer == 3
    from scaletune.search.summary import non_embedding_params

    trial = optuna.trial.create_trial(
        params={"n_layer": 2}, distributions={"n_layer": dims["n_layer"]}, value=1.0)
    assert non_embedding_params(trial, cfg) == 12 * 2 * 32**2  # it counted the file's 1 layer
    raw["search"]["n_layer"] = {"value": 4}
    assert model_shape(validate_study(raw), 256).n_layer == 4
    # Its prior's range taken inward to whole ends (low=1.5 was "give whole-number ends").
    monkeypatch.setitem(hparams.HPARAMS, "n_layer", HParam(
        "n_layer", target="model.n_layer", label="layers", unit="", low=1, high=12, whole=True,
        allowed="1 to 12 layers", default=None,
        prior=lambda _: Prior(name="n_layer", center=3, low=1.5, high=8.5, log=False, sigma=1)))
    raw["search"]["n_layer"] = {"prior": "auto"}
    dims = {d.name: d.distribution for d in SearchPlan.build(validate_study(raw)).dims}
    assert dims["n_layer"] == optuna.distributions.IntDistribution(2, 8)
    # A registered entry's fixed value that makes no model: a ValueError's traceback.
    monkeypatch.setitem(hparams.HPARAMS, "n_head", HParam(
        "n_head", target="model.n_head", label="heads", unit="", low=1, high=64, whole=True,
        allowed="1 to 64 heads", default=None))
    with pytest.raises(ConfigError, match=r"search: the values it fixes \(search.n_head=3\) make"):
        SearchPlan.build(validate_study({**raw, "search": {**raw["search"], "n_head": {"value": 3}}}))
    del hparams.HPARAMS["n_head"]
    # prior: auto of an entry registered without one: an AssertionError.
    monkeypatch.setitem(hparams.HPARAMS, "beta2", HParam(
        "beta2", target="optim.beta2", label="Adam beta2", unit="", low=0.5, high=0.9999,
        allowed="a beta2 in [0.5, 0.9999]", default=None))
    with pytest.raises(ConfigError, match="search.beta2: prior: auto, and it has no prior"):
        SearchPlan.build(validate_study(raw))


def test_a_study_leaves_an_optional_hyperparameter_to_the_trainer(tmp_path, shakespeare, beta2):
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    assert cfg.search.beta2 is None
    assert "beta2" not in cfg.model_dump(mode="json", by_alias=True)["search"]


def test_a_registered_sixth_hyperparameter_is_checked_like_the_five(tmp_path, shakespeare, beta2):
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["beta2"] = {"low": 0.2, "high": 0.99}
    with pytest.raises(ConfigError) as err:
        validate_study(raw)
    assert "search.beta2: 0.2 is not allowed, expected a beta2 in [0.5, 0.9999]" in err.value.errors
    # The key names the allowed ones, the sixth among them, when a key is misspelt.
    raw["search"]["beta_2"] = raw["search"].pop("beta2")
    with pytest.raises(ConfigError, match="search.beta_2: unknown key; allowed: .*batch_size, beta2"):
        validate_study(raw)


def test_a_tiny_study_searches_a_registered_sixth_hyperparameter(tmp_path, shakespeare, beta2):
    raw = tiny_study(tmp_path, shakespeare, n_trials=3, tokens_per_trial=16_384,
                     pruner={"name": "none"})
    raw["search"]["beta2"] = {"prior": "auto"}
    cfg = validate_study(raw)
    plan = SearchPlan.build(cfg)
    cfg.folder.mkdir(parents=True)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    # The priors' center trial carries the sixth hyperparameter's center too.
    assert plan.first_trial["beta2"] == pytest.approx(BETA2_PRIOR.center)
    for _ in range(cfg.n_trials):
        run = plan.ask(study, num_threads=1)
        # The sampled value reaches the trainer's field, inside the prior's range.
        assert run.config.optim.beta2 == run.params["beta2"]
        assert BETA2_PRIOR.low <= run.params["beta2"] <= BETA2_PRIOR.high
        result = train_trial(run.config, lambda t, v, m, run=run: run.report(t, v))
        assert run.tell(study, result)[0] == "COMPLETE"
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3 and len({t.params["beta2"] for t in trials}) == 3
    assert trials[0].params["beta2"] == pytest.approx(BETA2_PRIOR.center)
    # The study records that it searched beta2, as it ran.
    assert study.user_attrs["config"]["search"]["beta2"]["prior"] == "auto"
    # Its summary's next steps are Python: the command line refuses the file ("search.beta2:
    # unknown key"), and it had suggested `scaletune report` and `export`.
    from rich.console import Console

    from scaletune.search.progress import print_run_summary

    console = Console(record=True, width=300)
    print_run_summary(console, study, cfg, "study.yaml", 1.0)
    out = console.export_text()
    assert "scaletune report" not in out and "scaletune export" not in out
    assert (f"make_report(cfg, '{cfg.folder / 'report'}')   # in Python: the command line does "
            "not know search.beta2, registered in Python") in out
    assert "export_study(cfg, 'final.yaml', tokens=163_840)" in out


# --------------------------------------------------------------------------- search.other


def _with_other(tmp_path, shakespeare, **other):
    raw = tiny_study(tmp_path, shakespeare, model={"n_layer": 1, "n_head": 4, "n_embd": 32,
                                                   "block_size": 32})
    raw["search"]["other"] = other
    return write_study(tmp_path, raw)


def test_values_of_search_other_that_cannot_train_together_are_found_before_a_run(
        tmp_path, shakespeare, capsys):
    path = _with_other(tmp_path, shakespeare, **{"model.n_embd": {"choices": [32, 30]},
                                                 "model.n_head": {"choices": [2, 4]}})
    # Rule: each value is valid alone, one pair is not (4 heads do not divide 30): validate and
    # the dry run name the pair and the reason, as run would refuse it, before anything starts.
    for command in (["validate", str(path)], ["run", str(path), "--dry-run"], ["run", str(path)]):
        assert main(command) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert ("search.other: 1 of the 4 combinations of values tried makes a trial config no "
                "run can train: model.n_embd=30, model.n_head=4 (model: n_head must divide "
                "n_embd, got n_embd=30, n_head=4)") in out
    assert not (tmp_path / "study").exists()
    fine = _with_other(tmp_path, shakespeare, **{"model.n_embd": {"choices": [32, 64]},
                                                 "model.n_head": {"choices": [2, 4]}})
    assert main(["validate", str(fine)]) == 0


def test_a_trial_drawn_where_no_run_can_train_ends_fail_and_stops_the_study(tmp_path, shakespeare,
                                                                            monkeypatch):
    # A long range is tried at some of its values before a run; where those all train (here
    # its ends alone, 8 and 260 with 4 heads), a trial may still draw one that does not (9).
    from scaletune.search import space

    monkeypatch.setattr(space, "_values_to_try", lambda dist: [dist.low, dist.high])
    path = _with_other(tmp_path, shakespeare, **{"model.n_embd": {"low": 8, "high": 260}})
    cfg = load_study(path)
    plan = SearchPlan.build(cfg)
    assert plan.problems() == []
    cfg.folder.mkdir(parents=True)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    with pytest.raises(ConfigError) as err:
        for _ in range(50):  # three values in four do not train: one is drawn soon
            plan.ask(study, num_threads=1)
    bad = study.get_trials(deepcopy=False)[-1]
    n_embd = bad.params["model.n_embd"]
    assert n_embd % 4 and f"got n_embd={n_embd}, n_head=4" in str(err.value)
    assert f"trial {bad.number} drew" in str(err.value)
    # Rule: the trial ends FAIL with the reason, not RUNNING for the next launch to take again.
    assert bad.state == optuna.trial.TrialState.FAIL
    assert "n_head must divide n_embd" in bad.user_attrs["fail_reason"]
