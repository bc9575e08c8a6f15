"""Planning a study offline: its priors come from the model, the budget and the tokenizer's name,
without downloading or tokenizing its data; only dropout's epochs need the data, and say so."""

from __future__ import annotations

import re
import socket
import time

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from rich.console import Console
from tokenizers import Tokenizer, models

from scaletune.heuristics.priors import priors_table
from scaletune.search.config import validate_study
from scaletune.search.space import planning_priors, study_priors
from scaletune.trainer import data as token_data
from scaletune.trainer.data import prepare_data

# The priors that need only the model, the budget and the vocabulary (weight decay follows
# from tau, lr and batch).
DATA_FREE = ["lr", "weight_decay", "tau", "warmup_frac", "batch_size"]
TOKENS = 100_000


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt is refused and recorded."""
    attempts: list[object] = []

    def refuse(sock, address):
        attempts.append(address)
        raise OSError(f"network blocked in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def no_tiktoken_files(tmp_path, monkeypatch):
    """An empty tiktoken cache: loading gpt2 would have to download it."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "gpt2", raising=False)
    asked: list[str] = []

    def no_download(url):
        asked.append(url)
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    return asked


def study(tmp_path, tokens=TOKENS, **data):
    return validate_study({
        "name": "plan",
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
        "data": {"cache_dir": str(tmp_path / "cache"), **data},
        "tokens_per_trial": tokens,
        "n_trials": 4,
    })


def hub_study(tmp_path, tokenizer="byte"):
    return study(tmp_path, source="hf", dataset="some/remote-id", tokenizer=tokenizer)


def run_priors(tmp_path, size, vocab_size):
    """The priors `scaletune run` computes from a prepared corpus of ``size`` bytes."""
    path = tmp_path / "corpus.txt"
    path.write_text("a few words of text\n" * (size // 20))
    cfg = study(tmp_path, source="text", path=str(path))
    data = prepare_data(cfg.data, cfg.model.block_size)
    return study_priors(cfg, vocab_size, data.n_train_tokens)


def timed_planning_priors(cfg):
    start = time.monotonic()
    priors = planning_priors(cfg)
    return priors, time.monotonic() - start


def table_text(priors):
    console = Console(record=True, width=240)
    console.print(priors_table(priors))
    return console.export_text()


def test_hub_dataset_priors_need_no_network(tmp_path, no_network):
    priors, seconds = timed_planning_priors(hub_study(tmp_path))
    # Nothing is downloaded: no connection is attempted, and the answer is immediate.
    assert no_network == [] and seconds < 3
    # lr, tau, batch, warmup (and weight decay) equal run's on a prepared single-epoch corpus.
    prepared = run_priors(tmp_path, 4 * TOKENS, vocab_size=256)
    for name in DATA_FREE:
        assert getattr(priors, name) == getattr(prepared, name), name
    # Dropout says that its epochs are unknown and one is assumed, in the table too.
    laws = [s.law for s in priors.dropout.sources]
    assert "epochs unknown (the data is not prepared), assumed" in laws
    text = table_text(priors)
    assert re.search(r"epochs unknown \(the data is not prepared\), assumed: 1 epoch\b", text)
    assert "epochs unknown (1 assumed)" in text


def test_gpt2_study_priors_need_neither_network_nor_encoding_files(
    tmp_path, no_network, no_tiktoken_files
):
    priors, seconds = timed_planning_priors(hub_study(tmp_path, tokenizer="gpt2"))
    assert no_network == [] and no_tiktoken_files == [] and seconds < 3
    # The vocabulary is gpt2's 50257 (it counts in the total parameters).
    prepared = run_priors(tmp_path, 4 * TOKENS, vocab_size=50257)
    assert dict(priors.context)["total_params"] == dict(prepared.context)["total_params"]
    for name in DATA_FREE:
        assert getattr(priors, name) == getattr(prepared, name), name
    assert "epochs unknown (the data is not prepared), assumed" in {
        s.law for s in priors.dropout.sources}


def test_a_tokenizer_file_study_plans_with_the_files_vocabulary(tmp_path, no_network):
    path = tmp_path / "tokenizer.json"
    Tokenizer(models.WordLevel({f"w{i}": i for i in range(300)}, unk_token="w0")).save(str(path))
    priors, seconds = timed_planning_priors(hub_study(tmp_path, tokenizer=str(path)))
    assert no_network == [] and seconds < 3
    # The vocabulary is the file's 300 (it counts in the total parameters), read offline.
    params = dict(priors.context)["total_params"]
    assert params == dict(run_priors(tmp_path, 4 * TOKENS, vocab_size=300).context)["total_params"]
    assert params != dict(run_priors(tmp_path, 4 * TOKENS, vocab_size=256).context)["total_params"]


def test_a_hub_dataset_prepared_before_is_counted_from_the_cache(tmp_path, no_network,
                                                                 monkeypatch):
    cfg = hub_study(tmp_path)
    # Prepared once where the hub was reachable (the documents stand in for the download).
    monkeypatch.setattr(token_data, "read_documents", lambda c: ["some text of the hub " * 800])
    data = prepare_data(cfg.data, cfg.model.block_size)

    def not_again(c):
        raise AssertionError("the data was read again")

    monkeypatch.setattr(token_data, "read_documents", not_again)
    # Every prior, dropout's epochs included, is what `scaletune run` computes.
    assert planning_priors(cfg) == study_priors(cfg, data.vocab_size, data.n_train_tokens)
    assert no_network == []


def test_byte_text_epochs_are_estimated_from_the_file_sizes(tmp_path):
    (tmp_path / "a.txt").write_text("one file of text\n" * 1000)
    (tmp_path / "b.txt").write_text("and a second one\n" * 2000)
    cfg = study(tmp_path, tokens=200_000, source="text", path=str(tmp_path / "*.txt"))
    estimated = planning_priors(cfg)
    # The estimate is the count the prepared data gives (several epochs: dropout above 0) ...
    data = prepare_data(cfg.data, cfg.model.block_size)
    epochs = 200_000 / data.n_train_tokens
    source = estimated.dropout.sources[-1]
    assert source.law == "epochs estimated from data.path's size, a token per byte"
    assert source.value == pytest.approx(epochs) and epochs > 1
    counted = planning_priors(cfg)
    assert counted == study_priors(cfg, data.vocab_size, data.n_train_tokens)
    # ... so every prior is run's, and only the estimate's note sets them apart.
    for name, prior in counted.as_dict().items():
        guess = getattr(estimated, name)
        assert (guess.center, guess.low, guess.high) == (prior.center, prior.low, prior.high)
    assert estimated.dropout.center > 0
    assert "epochs estimated from data.path's size" in table_text(estimated)


def test_a_missing_text_file_leaves_only_the_epochs_unknown(tmp_path):
    cfg = study(tmp_path, source="text", path=str(tmp_path / "nowhere.txt"))
    priors = planning_priors(cfg)
    law = priors.dropout.sources[-1].law
    assert law.startswith("epochs unknown (data.path: file not found") and "nowhere.txt" in law
    prepared = run_priors(tmp_path, 4 * TOKENS, vocab_size=256)
    assert priors.lr == prepared.lr


def test_scaletune_priors_of_a_hub_study_prints_offline(tmp_path, no_network, capsys):
    import yaml

    from scaletune.search.cli import main

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "plan", "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
        "data": {"source": "hf", "dataset": "some/remote-id", "tokenizer": "byte",
                 "cache_dir": str(tmp_path / "cache")},
        "tokens_per_trial": TOKENS, "n_trials": 4,
    }))
    assert main(["priors", str(path)]) == 0
    out = capsys.readouterr().out
    # The table comes out whole, with no connection tried, and dropout says what it assumed.
    assert "Priors from scaling laws" in out and "epochs unknown" in out
    assert no_network == []
