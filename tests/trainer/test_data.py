import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import torch

import scaletune.trainer.data
from scaletune.trainer.config import DataConfig
from scaletune.trainer.data import (
    download_notes,
    hub_download_note,
    prepare_data,
    read_documents,
    sample_batch,
    split_sizes,
    unigram_loss,
    val_windows,
    vocab_size_of,
)
from scaletune.trainer.errors import DataError


def text_cfg(path, tmp_path, **kw) -> DataConfig:
    return DataConfig(source="text", path=str(path), cache_dir=str(tmp_path / "cache"), **kw)


def test_tokens_are_cached_and_equal_the_tokenization(shakespeare, tmp_path, monkeypatch):
    raw = shakespeare.read_bytes()
    first = prepare_data(text_cfg(shakespeare, tmp_path), block_size=64)
    assert not first.from_cache and first.vocab_size == 256
    # The fingerprint starts with the file's sha256 (86c4e6aa... for Tiny Shakespeare).
    assert first.fingerprint.endswith("-byte") and first.fingerprint[:8] == "86c4e6aa"
    tokens = np.concatenate([first.train, first.val])
    assert tokens.dtype == np.uint16 and np.array_equal(tokens, np.frombuffer(raw, dtype=np.uint8))
    # The rule: the validation split is the tail val_fraction of the stream.
    assert first.n_val_tokens == int(len(raw) * 0.1) and first.n_train_tokens + first.n_val_tokens == len(raw)

    def no_tokenizing(*args):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(scaletune.trainer.data, "_encode", no_tokenizing)
    monkeypatch.setattr(scaletune.trainer.data, "read_documents", no_tokenizing)
    second = prepare_data(text_cfg(shakespeare, tmp_path), block_size=64)
    assert second.from_cache and second.fingerprint == first.fingerprint and second.path == first.path
    assert isinstance(second.train, np.memmap) and np.array_equal(second.val, first.val)
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_the_unigram_loss_is_what_token_frequencies_alone_score_on_the_validation_windows(
        tmp_path, monkeypatch):
    path = tmp_path / "aaab.txt"
    path.write_text("aaab" * 20_000)  # bytes: a three times in four, b once
    data = prepare_data(text_cfg(path, tmp_path), 32)
    # The entropy of (3/4, 1/4) in nats (each window of 32 holds 24 a and 8 b), with every
    # byte counted from 1/2.
    n = data.n_train_tokens
    expected = -(0.75 * math.log((0.75 * n + 0.5) / (n + 128))
                 + 0.25 * math.log((0.25 * n + 0.5) / (n + 128)))
    assert unigram_loss(data, 32, 16) == pytest.approx(expected)
    # A split longer than the sample is counted in evenly spaced stretches, to about the same.
    with monkeypatch.context() as m:
        m.setattr("scaletune.trainer.data.UNIGRAM_SAMPLE", 4096 * 4)
        assert unigram_loss(data, 32, 16) == pytest.approx(expected, abs=0.01)
    # Scored on the windows every trial is: a validation split whose windows hold only "a"
    # costs -log(3/4) per token, not the whole split's mix.
    path.write_text("aaab" * 20_000 + "a" * 20_000)
    data = prepare_data(text_cfg(path, tmp_path), 32)
    counts = np.bincount(np.asarray(data.train), minlength=256) + 0.5
    assert unigram_loss(data, 32, 16) == pytest.approx(-math.log(counts[97] / counts.sum()))


def test_a_token_file_cut_short_is_tokenized_again_not_trained_on(shakespeare, tmp_path):
    first = prepare_data(text_cfg(shakespeare, tmp_path), block_size=64)
    with open(first.path, "r+b") as f:  # a copy stopped halfway, a full disk
        f.truncate(3_000)
    del first
    again = prepare_data(text_cfg(shakespeare, tmp_path), block_size=64)
    # It trained on 1,350 tokens and scored on another 150 before.
    assert not again.from_cache
    assert again.n_train_tokens + again.n_val_tokens == len(shakespeare.read_bytes())
    assert split_sizes(text_cfg(shakespeare, tmp_path)) == (again.n_train_tokens,
                                                            again.n_val_tokens)


def test_a_token_file_cut_short_under_another_record_is_tokenized_again(shakespeare, tmp_path):
    # A data file touched (or moved) makes a new cache record, which took the token file of the
    # same text as it found it, cut short, and recorded that size as whole.
    text = tmp_path / "play.txt"
    text.write_bytes(shakespeare.read_bytes())
    first = prepare_data(text_cfg(text, tmp_path), block_size=64)
    whole = first.n_train_tokens + first.n_val_tokens
    with open(first.path, "r+b") as f:
        f.truncate(3_001)  # an odd size too: numpy refused it as no whole number of tokens
    del first
    os.utime(text, (1, 1))
    again = prepare_data(text_cfg(text, tmp_path), block_size=64)
    assert again.n_train_tokens + again.n_val_tokens == whole
    assert prepare_data(text_cfg(text, tmp_path), block_size=64).from_cache


def test_a_token_file_another_process_removes_meanwhile_is_not_intact(tmp_path, monkeypatch):
    # Two runs sharing a cache whose token file was cut short: one removed it to rebuild it
    # between the other's two looks at it (exists, then stat), which raised FileNotFoundError.
    class Vanishing(type(tmp_path)):
        def exists(self, *args, **kwargs):
            return True

        def stat(self, *args, **kwargs):
            raise FileNotFoundError(2, "No such file or directory", str(self))

    monkeypatch.setattr(scaletune.trainer.data, "_token_path",
                        lambda cache, meta: Vanishing(tmp_path / "tokens.bin"))
    assert scaletune.trainer.data._intact(tmp_path, {"bytes": 10}) is False


def test_a_cache_record_that_is_no_record_is_read_again(shakespeare, tmp_path):
    first = prepare_data(text_cfg(shakespeare, tmp_path), block_size=64)
    (record,) = (tmp_path / "cache").glob("source-*.json")
    for bad in (b"\xff\xfe not utf-8", b"[1, 2]", b'{"fingerprint": 3}'):
        record.write_bytes(bad)  # a UnicodeDecodeError, a TypeError: tracebacks before
        again = prepare_data(text_cfg(shakespeare, tmp_path), block_size=64)
        assert again.fingerprint == first.fingerprint and not again.from_cache


def test_a_file_named_with_glob_characters_is_that_file(tmp_path):
    # shake[v2].txt was read as a glob: "no file matches" while it existed, or, beside a file
    # shakev.txt, that other file, without a word.
    (tmp_path / "shake[v2].txt").write_text("the file named " * 20)
    (tmp_path / "shakev.txt").write_text("another file " * 20)
    (tmp_path / "part[1].jsonl").write_text('{"text": "the json file named"}\n')
    (tmp_path / "part1.jsonl").write_text('{"text": "another json file"}\n')
    text = DataConfig(source="text", path=str(tmp_path / "shake[v2].txt"))
    assert read_documents(text) == ["the file named " * 20]
    json = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "part[1].jsonl"),
                      cache_dir=str(tmp_path / "cache"))
    assert read_documents(json) == ["the json file named"]
    # A glob is still a glob.
    assert read_documents(text.model_copy(update={"path": str(tmp_path / "shake*.txt")})) == \
        ["the file named " * 20, "another file " * 20]


def test_a_relative_glob_in_a_folder_named_with_glob_characters_reads_that_folder(tmp_path):
    # The file's folder "br [v2]" was part of the glob: it matched "br 2/data/other.txt", another
    # folder's data, without a word (or nothing at all where no such folder was).
    for folder, text in (("br [v2]", "the study's own text "), ("br 2", "another folder's text ")):
        (tmp_path / folder / "data").mkdir(parents=True)
        (tmp_path / folder / "data" / "part.txt").write_text(text * 20)
    (tmp_path / "br [v2]" / "data" / "one.txt").write_text("one file " * 20)
    base = tmp_path / "br [v2]"
    for path, read in (("data/*.txt", ["one file " * 20, "the study's own text " * 20]),
                       ("data/one.txt", ["one file " * 20])):
        resolved = DataConfig(source="text", path=path).resolved(base)
        assert read_documents(resolved) == read, path


def test_a_builders_unreadable_files_are_data_files_problems_found_before_a_run(tmp_path):
    # Empty files and text that is not UTF-8: validate said ok, and the run named data.dataset.
    from scaletune.trainer.data import column_problem

    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    (tmp_path / "json").mkdir()
    for builder, name, said in (
            ("json", "empty.jsonl", "the file is empty (0 bytes): nothing to train on"),
            ("text", "latin1.txt", "is not UTF-8 text")):
        cfg = DataConfig(source="hf", dataset=builder, data_files=str(tmp_path / name),
                         cache_dir=str(tmp_path / "cache"))
        assert column_problem(cfg).startswith("data.data_files: ") and said in column_problem(cfg)
        with pytest.raises(DataError, match=rf"^data\.data_files: the {builder} builder could "
                                            "not read"):
            read_documents(cfg)
    # A folder given as a json builder's files is advised a glob of json files, not of *.txt.
    folder = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "json"))
    assert folder.file_errors() == [f"data.data_files: {str(tmp_path / 'json')!r} is a folder; "
                                    f"give a file or a glob such as {tmp_path / 'json'}/*.json"]


def test_a_folder_of_text_files_reads_a_document_per_file(tmp_path):
    # `datasets` picks its text builder for the folder, which made each line a document and
    # dropped the blank lines between paragraphs.
    (tmp_path / "corpus").mkdir()
    text = "First paragraph,\nits second line.\n\nSecond paragraph.\n" * 40
    (tmp_path / "corpus" / "a.txt").write_text(text)
    folder = DataConfig(source="hf", dataset=str(tmp_path / "corpus"),
                        cache_dir=str(tmp_path / "cache"))
    assert read_documents(folder) == [text]
    as_text = DataConfig(source="text", path=str(tmp_path / "corpus" / "*.txt"),
                         cache_dir=str(tmp_path / "cache"))
    assert prepare_data(folder, 16).fingerprint == prepare_data(as_text, 16).fingerprint


def test_a_folder_whose_files_datasets_would_leave_out_says_which(tmp_path):
    # `datasets` reads one kind of file of a folder (its most common suffix), and where file
    # names name splits (train*, test*), the files each names: the others were left out of
    # training without a word (a .jsonl among .txt files; more.jsonl beside train.jsonl), and a
    # folder whose one named file was test-notes.jsonl failed at the run, validate having said
    # ok.
    from scaletune.trainer.data import column_problem

    def folder(name, files):
        (tmp_path / name).mkdir()
        for file, text in files.items():
            (tmp_path / name / file).write_text(text)
        return DataConfig(source="hf", dataset=str(tmp_path / name),
                          cache_dir=str(tmp_path / "cache"))

    prose = "Some prose to train on, and more of it.\n" * 40
    mixed = folder("mixed", {"a.txt": prose, "b.txt": prose, "c.jsonl": '{"text": "x"}\n'})
    (note,) = download_notes(mixed)
    assert "reads split 'train' of the folder" in note and "from a.txt, b.txt" in note
    assert "leaves out 1 of its data files (c.jsonl: it reads one kind of file, text" in note
    assert read_documents(mixed) == [prose, prose]  # what it says is what is read
    named = folder("named", {"train.jsonl": '{"text": "a b"}\n', "more.jsonl": '{"text": "c"}\n',
                             "test.jsonl": '{"text": "d"}\n'})
    (note,) = download_notes(named)  # test.jsonl is another split's: not left out
    assert "(more.jsonl: in none of the splits its files' names make)" in note
    assert "dataset: json, data_files: [FILE, ...]" in note
    assert column_problem(named) is None
    only_test = folder("only_test", {"shard-0.jsonl": '{"text": "a"}\n',
                                     "test-notes.jsonl": '{"text": "b"}\n'})
    problem = column_problem(only_test)
    assert problem.startswith("data.split: 'train' is not a split of the folder")
    assert "the split(s) 'test' (test: test-notes.jsonl); give split: one of them" in problem
    with pytest.raises(DataError) as e:  # the run's own words: 'Unknown split "train"'
        prepare_data(only_test, 16)
    assert str(e.value) == problem
    # Every file read: no note.
    assert download_notes(folder("plain", {"a.txt": prose})) == []


def test_compressed_data_files_are_checked_as_the_run_reads_them(tmp_path):
    # `datasets` reads a .jsonl.gz (and .bz2, .xz) through; validate read it raw and refused as
    # "not UTF-8 text" a file that the run trained on.
    import gzip
    import lzma

    from scaletune.trainer.data import column_problem

    rows = '{"text": "some prose"}\n{"text": "more prose"}\n'
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    (tmp_path / "t.txt.xz").write_bytes(lzma.compress(b"plain text\n"))
    gz = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "c.jsonl.gz"),
                    cache_dir=str(tmp_path / "cache"))
    assert column_problem(gz) is None
    assert read_documents(gz) == ["some prose", "more prose"]
    # What it checks, it checks in the decompressed text: the column.
    assert column_problem(gz.model_copy(update={"text_column": "body"})) == (
        f"data.text_column: 'body' is not a column of {str(tmp_path / 'c.jsonl.gz')!r} "
        "(data.data_files, read as json), which has ['text']")
    xz = DataConfig(source="hf", dataset="text", data_files=str(tmp_path / "t.txt.xz"),
                    cache_dir=str(tmp_path / "cache"))
    assert column_problem(xz) is None
    (tmp_path / "bad.txt.gz").write_bytes(gzip.compress(b"\xff\xfe not text"))
    bad = xz.model_copy(update={"data_files": str(tmp_path / "bad.txt.gz")})
    assert "bad.txt.gz' is not UTF-8 text" in column_problem(bad)


def test_a_glob_that_matches_folders_reads_their_files_alone(tmp_path):
    # `corpus/**` matches corpus/ and its folders too: an IsADirectoryError at the first trial.
    from scaletune.trainer.config import text_files

    (tmp_path / "corpus" / "part").mkdir(parents=True)
    (tmp_path / "corpus" / "a.txt").write_text("first " * 50)
    (tmp_path / "corpus" / "part" / "b.txt").write_text("second " * 50)
    docs = read_documents(DataConfig(source="text", path=str(tmp_path / "corpus" / "**")))
    assert docs == ["first " * 50, "second " * 50]
    with pytest.raises(ValueError, match=r"no file matches .*\(only folders do\)"):
        text_files(str(tmp_path / "corp*"))


def test_validation_files_that_are_also_training_files_are_refused(tmp_path):
    # path: d/*.txt with val_path: d/val.txt trained on the validation text and scored on it.
    for name in ("train1.txt", "train2.txt", "val.txt"):
        (tmp_path / name).write_text(f"{name} " * 100)
    cfg = DataConfig(source="text", path=str(tmp_path / "*.txt"),
                     val_path=str(tmp_path / "val.txt"))
    (error,) = cfg.file_errors()
    assert error.startswith(f"data.val_path: {tmp_path / 'val.txt'} is also among the training "
                            "files (data.path matches it)")
    spelled = cfg.model_copy(update={"path": str(tmp_path / "train*.txt"),
                                     "val_path": str(tmp_path / "." / "train2.txt")})
    assert "is also among the training files" in " ".join(spelled.file_errors())
    apart = cfg.model_copy(update={"path": str(tmp_path / "train*.txt")})
    assert apart.file_errors() == []
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a row"}\n')
    local = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "*.jsonl"),
                       val_path=str(rows))
    assert "(data.data_files matches it)" in " ".join(local.file_errors())


def test_csv_and_json_lines_that_begin_with_a_bom_are_read_by_validate_as_by_the_run(tmp_path):
    # validate read the BOM into the first column's name ('\ufefftext') or refused line 1 as
    # not JSON, where `datasets` reads both files.
    from scaletune.trainer.data import column_problem

    (tmp_path / "rows.csv").write_text("\ufefftext,id\nhello there,1\n", encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text('\ufeff{"text": "hello there"}\n', encoding="utf-8")
    for builder, name in (("csv", "rows.csv"), ("json", "rows.jsonl")):
        cfg = DataConfig(source="hf", dataset=builder, data_files=str(tmp_path / name))
        assert column_problem(cfg) is None, builder
        assert column_problem(cfg.model_copy(update={"text_column": "body"})) is not None


def test_edited_file_is_tokenized_again(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello world " * 100)
    a = prepare_data(text_cfg(path, tmp_path), block_size=8)
    path.write_text("other words " * 101)
    b = prepare_data(text_cfg(path, tmp_path), block_size=8)
    assert not b.from_cache and a.fingerprint != b.fingerprint


def test_glob_reads_files_in_sorted_order(tmp_path):
    for name, text in [("b.txt", "second " * 50), ("a.txt", "first " * 50)]:
        (tmp_path / name).write_text(text)
    docs = read_documents(DataConfig(source="text", path=str(tmp_path / "*.txt")))
    assert docs == ["first " * 50, "second " * 50]


def test_missing_files_are_named(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="nope.txt"):
        prepare_data(text_cfg(missing, tmp_path), block_size=8)
    with pytest.raises(DataError, match=r"no file matches .*\*\.md"):
        prepare_data(text_cfg(tmp_path / "*.md", tmp_path), block_size=8)


def test_too_little_text_for_a_window(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("xy" * 250)
    with pytest.raises(DataError, match="block_size"):
        prepare_data(text_cfg(path, tmp_path), block_size=64)


def test_train_tokens_trains_on_the_first_part_of_the_split_and_keeps_validation(tmp_path):
    from scaletune.trainer.data import byte_text_train_tokens, prepared_sizes

    path = tmp_path / "text.txt"
    path.write_text("abcdefghij" * 1_000)  # 10,000 bytes: 9,000 to train on, 1,000 held out
    whole = prepare_data(text_cfg(path, tmp_path), block_size=16)
    part = text_cfg(path, tmp_path, train_tokens=2_500)
    # Before it is opened, the sizes that plan a study count the part too.
    assert byte_text_train_tokens(part) == 2_500
    cut = prepare_data(part, block_size=16)
    assert (whole.n_train_tokens, cut.n_train_tokens) == (9_000, 2_500)
    assert np.array_equal(cut.train, whole.train[:2_500])
    assert np.array_equal(cut.val, whole.val)
    assert prepared_sizes(part)[0] == 2_500
    # More than the split holds: the whole split, and a note says so (it was silent).
    from scaletune.trainer.data import train_tokens_note

    more = text_cfg(path, tmp_path, train_tokens=10**9)
    assert prepare_data(more, 16).n_train_tokens == 9_000
    assert train_tokens_note(more, byte_text_train_tokens(more)) == (
        "data.train_tokens: 1,000,000,000 is more than the data's 9,000 training tokens: it caps "
        "them, and the trials train on those 9,000")
    assert train_tokens_note(part, 2_500) is None
    # Too few for one window: the error names the setting and what helps (it said to use more
    # text or another val_fraction, which the cap makes no difference to).
    with pytest.raises(DataError, match=r"^data\.train_tokens: 10 training tokens are fewer than "
                                        r"one window, block_size \+ 1 = 17: give 17 or more"):
        prepare_data(text_cfg(path, tmp_path, train_tokens=10), block_size=16)


def test_split_sizes_are_known_before_the_data_is_prepared_where_they_can_be(tmp_path):
    from scaletune.trainer.data import split_sizes

    path = tmp_path / "text.txt"
    path.write_text("abcdefghij" * 1_000)  # 10,000 bytes: 1,000 held out
    cfg = text_cfg(path, tmp_path, train_tokens=2_500)
    # Byte-level text: from the file's size before it is prepared, from the cache after.
    assert split_sizes(cfg) == (2_500, 1_000)
    data = prepare_data(cfg, block_size=16)
    assert split_sizes(cfg) == (data.n_train_tokens, data.n_val_tokens) == (2_500, 1_000)
    # Data that a byte count cannot size: known once prepared.
    builtin = DataConfig(source="builtin", cache_dir=str(tmp_path / "cache"))
    assert split_sizes(builtin) is None
    docs = prepare_data(builtin, block_size=16)
    assert split_sizes(builtin) == (docs.n_train_tokens, docs.n_val_tokens)
    with pytest.raises(DataError, match="nope.txt"):
        split_sizes(text_cfg(tmp_path / "nope.txt", tmp_path))


def test_a_validation_split_smaller_than_its_windows_is_noted(tmp_path):
    from scaletune.trainer.data import validation_note

    cfg = text_cfg(tmp_path / "text.txt", tmp_path)
    # 1,000 held-out tokens: 62 windows of 15 + 1 tokens fit (992), 63 overlap (1,008).
    assert validation_note(cfg.model_copy(update={"val_windows": 62}), 15, 1_000) is None
    note = validation_note(cfg.model_copy(update={"val_windows": 63}), 15, 1_000)
    assert note == (
        "data: the validation split holds 1,000 tokens (val_fraction 0.1 of the data), fewer "
        "than its 63 windows of block_size + 1 = 16 tokens would cover (1,008): they overlap, "
        "and the val loss that ranks and prunes the trials rests on those 1,000 tokens alone, "
        "where small differences between trials are noise; use more text or raise "
        "data.val_fraction (below 0.5)")
    # A split already a quarter of the data or more: more text is the way.
    wide = cfg.model_copy(update={"val_fraction": 0.3})
    assert validation_note(wide, 15, 1_000).endswith("are noise; use more text")


def test_builtin_python_docs_work_offline(tmp_path):
    data = prepare_data(DataConfig(source="builtin", cache_dir=str(tmp_path)), block_size=128)
    assert data.n_train_tokens > 100_000 and data.vocab_size == 256
    assert b"assignment" in np.asarray(data.train[:200_000], dtype=np.uint8).tobytes()


def test_stdlib_sources_are_sorted_and_exclude_site_packages():
    paths = scaletune.trainer.data._stdlib_sources()
    assert len(paths) > 100 and paths == sorted(paths)
    assert not any("site-packages" in p for p in paths)


def test_batches_follow_the_generator_seed(shakespeare, tmp_path):
    data = prepare_data(text_cfg(shakespeare, tmp_path), block_size=32)
    a = sample_batch(data.train, 4, 32, torch.Generator().manual_seed(7))
    b = sample_batch(data.train, 4, 32, torch.Generator().manual_seed(7))
    c = sample_batch(data.train, 4, 32, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    x, y = a
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_validation_windows_are_fixed_and_evenly_spaced(shakespeare, tmp_path):
    data = prepare_data(text_cfg(shakespeare, tmp_path), block_size=32)
    w = val_windows(data.val, 32, 8)
    assert w.shape == (8, 33) and torch.equal(w, val_windows(data.val, 32, 8))
    val = torch.from_numpy(np.asarray(data.val, dtype=np.int64))
    offsets = np.linspace(0, len(val) - 33, 8).round().astype(int)
    assert offsets[0] == 0 and offsets[-1] == len(val) - 33
    for row, off in zip(w, offsets, strict=True):
        assert torch.equal(row, val[off : off + 33])


def test_hf_text_builder_on_a_local_file(shakespeare, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    hf = DataConfig(source="hf", dataset="text", data_files=str(shakespeare),
                    cache_dir=str(tmp_path / "cache"))
    data = prepare_data(hf, block_size=64)
    # The rule: the same text gives the same fingerprint and tokens whatever the reader.
    plain = prepare_data(text_cfg(shakespeare, tmp_path / "other"), block_size=64)
    assert data.fingerprint == plain.fingerprint
    assert np.array_equal(data.val, plain.val)
    # Rule: no copy of the corpus is left in datasets' cache, nor in the token cache beside the
    # tokens (datasets converted the file to Arrow in its cache, ~/.cache/huggingface).
    left = [p for p in (tmp_path / "hf").rglob("*") if p.is_file()]
    assert not [p for p in left if p.suffix == ".arrow"], left
    assert not list((tmp_path / "cache").glob("datasets-*"))
    bad = hf.model_copy(update={"text_column": "content", "cache_dir": str(tmp_path / "c2")})
    with pytest.raises(DataError, match="'content' is not a column.*'text'"):
        prepare_data(bad, block_size=64)
    no_split = hf.model_copy(update={"split": "validation", "cache_dir": str(tmp_path / "c3")})
    with pytest.raises(DataError, match="text builder could not read .*split='validation'") as e:
        prepare_data(no_split, block_size=64)
    assert "cache" not in str(e.value)  # a missing split is no network problem
    # Files whose columns differ: the reason named no column, cut at its first line.
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.jsonl").write_text('{"id": 1, "content": "some text"}\n' * 3)
    (tmp_path / "j" / "b.jsonl").write_text('{"id": 2, "text": "other text"}\n' * 3)
    mixed = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "j" / "*.jsonl"),
                       text_column="content", cache_dir=str(tmp_path / "c4"))
    with pytest.raises(DataError) as e:
        prepare_data(mixed, block_size=64)
    said = " ".join(str(e.value).split())
    assert "Couldn't cast id: int64 text: string" in said, said
    assert ("because column names don't match (there are 1 new columns ({'text'}); the data "
            "files do not all have the same columns, and datasets reads them as one table") \
        in said, said
    # Every value empty: "the hf source yielded no text" named neither the files nor the column.
    (tmp_path / "blank.jsonl").write_text('{"text": ""}\n' * 3)
    blank = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "blank.jsonl"),
                       cache_dir=str(tmp_path / "c5"))
    with pytest.raises(DataError, match=r"data.text_column: every 'text' value of '.*blank.jsonl' "
                                        r"\(data.data_files, read as json\) is empty"):
        prepare_data(blank, block_size=64)
    # An empty file of the text builder has no column to blame: the file is named.
    (tmp_path / "empty.txt").write_text("")
    empty = hf.model_copy(update={"data_files": str(tmp_path / "empty.txt"),
                                  "cache_dir": str(tmp_path / "c6")})
    with pytest.raises(DataError) as e:
        prepare_data(empty, block_size=64)
    assert "text_column" not in str(e.value) and "empty.txt" in str(e.value), str(e.value)
    # A slice of the one split of a files builder is datasets' to read (refused as a split).
    sliced = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "blank.jsonl"),
                        split="train[:50%]")
    assert sliced.split == "train[:50%]"


def test_datasets_progress_bars_stay_out_of_a_log(tmp_path, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    path = tmp_path / "one.txt"
    path.write_text("a document that datasets has never seen, so it builds a split\n")
    cfg = DataConfig(source="hf", dataset="text", data_files=str(path), tokenizer="byte")
    assert read_documents(cfg) == [path.read_text()]
    # Written to a file (pytest's capture, as a driver's output in a log): no "Generating train
    # split" bar of carriage returns; datasets' own setting is left as it was.
    assert "Generating" not in capsys.readouterr().err
    assert not datasets.are_progress_bars_disabled()


def test_a_hub_dataset_out_of_reach_says_how_to_get_it_offline(tmp_path):
    import subprocess
    import sys

    # A real `datasets` in a process of its own, offline (HF_HUB_OFFLINE, read at its import)
    # and with an empty cache: as on a machine without network that never loaded the dataset.
    code = ("from scaletune.trainer.config import DataConfig\n"
            "from scaletune.trainer.data import prepare_data\n"
            "from scaletune.trainer.errors import DataError\n"
            "try:\n"
            "    prepare_data(DataConfig(source='hf', dataset='someone/corpus', "
            f"cache_dir={str(tmp_path / 'tokens')!r}), block_size=64)\n"
            "except DataError as e:\n"
            "    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    said = " ".join(out.stdout.split())
    # Rule: the error says why (offline, not in the cache) and both ways on: the cache copied
    # from a machine with network, or the text as local files.
    assert "data.dataset: could not load 'someone/corpus'" in said, out.stdout + out.stderr
    assert "Offline mode is on (HF_HUB_OFFLINE) and the dataset is not in this machine's " \
           "datasets cache" in said
    assert "copy ~/.cache/huggingface here" in said and "data_files (no network needed)" in said


def test_a_hub_dataset_not_in_the_caches_is_named_before_a_run_tries_to_download_it(
        tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    hub, prepared = tmp_path / "hub", tmp_path / "datasets"
    hub.mkdir(), prepared.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(prepared))
    cfg = DataConfig(source="hf", dataset="Someone/Corpus", tokenizer="byte",
                     cache_dir=str(tmp_path / "tokens"))
    note = hub_download_note(cfg)
    assert note is not None and note in download_notes(cfg)
    assert (f"data.dataset 'Someone/Corpus' is not in this machine's Hugging Face caches "
            f"({hub}, {prepared}), so the first run downloads it") in note
    assert "HF_HUB_OFFLINE=1 fails at once" in note and "data_files" in note
    # Either cache holding it (by the folder names the libraries write, any case) is enough.
    (hub / "datasets--someone--corpus").mkdir()
    assert hub_download_note(cfg) is None
    (hub / "datasets--someone--corpus").rmdir()
    (prepared / "someone___corpus").mkdir()
    assert hub_download_note(cfg) is None
    # Local files and other sources download nothing.
    (prepared / "someone___corpus").rmdir()
    assert hub_download_note(cfg) is not None
    assert hub_download_note(cfg.model_copy(update={"dataset": "json"})) is None
    assert hub_download_note(cfg.model_copy(update={"dataset": str(tmp_path)})) is None
    assert hub_download_note(DataConfig(source="builtin", cache_dir=str(tmp_path))) is None


def test_hf_json_builder_reads_documents_from_the_text_column(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(f'{{"body": "document number {i}", "id": {i}}}\n' for i in range(5)))
    cfg = DataConfig(source="hf", dataset="json", data_files=str(path), text_column="body",
                     max_documents=3)
    # max_documents streams the split and keeps its first rows, in order.
    assert read_documents(cfg) == [f"document number {i}" for i in range(3)]
    with pytest.raises(DataError, match="'text' is not a column.*'body', 'id'"):
        read_documents(cfg.model_copy(update={"text_column": "text"}))
    everything = cfg.model_copy(update={"max_documents": None})
    assert read_documents(everything) == [f"document number {i}" for i in range(5)]
    # A column of numbers or records is refused by name (it was a TypeError traceback in the
    # cache's hash), read whole or streamed.
    for column, kind in (("id", "int64"), ("meta", "dict")):
        path.write_text("".join(f'{{"body": "doc {i}", "id": {i}, "meta": {{"a": "x"}}}}\n'
                                for i in range(5)))
        for streamed in (None, 3):
            with pytest.raises(DataError, match=rf"data.text_column: '{column}' of '.*docs.jsonl' "
                                                r"\(data.data_files, read as json\) holds "
                                                rf"{kind} values .*not text: name a column of "
                                                r"text \(the columns: \['body', 'id', 'meta'\]\)"):
                read_documents(cfg.model_copy(update={"text_column": column,
                                                      "max_documents": streamed}))
    # A column of text with a number in one row: the row is named (the whole column was said
    # to hold numbers), and a 0 or a false there is no longer dropped unseen; empty rows are.
    for odd, said in (("0", "the int 0"), ("false", "the bool False"), ("42", "the int 42")):
        path.write_text('{"body": "doc 0"}\n{"body": ""}\n{"body": null}\n'
                        f'{{"body": {odd}}}\n{{"body": "doc 4"}}\n')
        with pytest.raises(DataError, match=rf"data.text_column: 'body' of '.*docs.jsonl' "
                                            r"\(data.data_files, read as json\) holds text, but "
                                            rf"its row 4 holds {said}: every value must be text "
                                            r"\(or empty\)"):
            read_documents(cfg.model_copy(update={"max_documents": None}))


def test_a_dataset_that_cannot_be_read_says_why(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    empty, binary = tmp_path / "empty.jsonl", tmp_path / "binary.txt"
    empty.write_text("")
    binary.write_bytes(b"text, then " + bytes(range(128, 256)))
    # The reason was empty ("StopIteration: "), or only "An error occurred while generating
    # the dataset".
    with pytest.raises(DataError, match=r"StopIteration \(no rows: is the file empty\?\)"):
        read_documents(DataConfig(source="hf", dataset="json", data_files=str(empty)))
    with pytest.raises(DataError, match=r"DatasetGenerationError: .*, caused by "
                                        r"UnicodeDecodeError: 'utf-8' codec can't decode"):
        read_documents(DataConfig(source="hf", dataset="text", data_files=str(binary)))


@pytest.fixture
def offline_encoding(monkeypatch):
    """A real tiktoken Encoding built offline: bytes plus a few merges, registered by name."""
    ranks = {bytes([i]): i for i in range(256)}
    for word in [b"th", b"he", b"the", b" t", b" th", b" the"]:
        ranks[word] = len(ranks)
    enc = tiktoken.Encoding(
        name="scaletune_test",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": len(ranks)},
    )
    tiktoken.registry.list_encoding_names()  # makes sure the constructor table exists
    monkeypatch.setitem(tiktoken.registry.ENCODING_CONSTRUCTORS, "scaletune_test", lambda: {
        "name": enc.name, "pat_str": enc._pat_str, "mergeable_ranks": ranks,
        "special_tokens": enc._special_tokens})
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "scaletune_test", raising=False)
    return enc


def test_tiktoken_encoding_tokenizes_documents_with_end_of_text(tmp_path, offline_encoding):
    enc = offline_encoding
    for name, text in [("a.txt", "the theme of the thesis " * 40), ("b.txt", "then the other " * 40)]:
        (tmp_path / name).write_text(text)
    cfg = text_cfg(tmp_path / "*.txt", tmp_path, tokenizer="scaletune_test")
    data = prepare_data(cfg, block_size=16)
    expected = (enc.encode_ordinary("the theme of the thesis " * 40) + [enc.eot_token]
                + enc.encode_ordinary("then the other " * 40))
    assert np.array_equal(np.concatenate([data.train, data.val]), expected)
    assert data.vocab_size == vocab_size_of("scaletune_test") == enc.n_vocab == 263
    assert data.fingerprint.endswith("-scaletune_test")
    assert len(expected) < len("the theme of the thesis " * 40) * 2  # merges did shorten it


def test_unloadable_tiktoken_encoding_names_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "gpt2", raising=False)

    def no_network(url):
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    path = tmp_path / "t.txt"
    path.write_text("some text " * 100)
    with pytest.raises(DataError) as err:
        prepare_data(text_cfg(path, tmp_path, tokenizer="gpt2"), block_size=8)
    message = str(err.value)
    assert "could not be loaded offline" in message
    assert "'byte'" in message and "TIKTOKEN_CACHE_DIR" in message
    with pytest.raises(DataError, match="could not be loaded offline"):
        vocab_size_of("gpt2")


def test_unknown_tokenizer_lists_the_choices(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"unknown tokenizer 'gpt5'.*'byte'.*gpt2"):
        vocab_size_of("gpt5")
    # A tokenizer's folder named without ./ is read as an encoding's name: said so.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tok dir").mkdir()
    said = DataConfig(source="text", path="a.txt", tokenizer="tok dir").file_errors()
    assert ("'tok dir' is here as a folder: a tokenizer file is given by a path with a / or "
            "ending in .json, such as ./tok dir/tokenizer.json") in " ".join(said), said


def test_real_gpt2_encoding_when_it_is_available():
    try:
        tiktoken.get_encoding("gpt2")
    except OSError:  # the download's error (requests' are OSErrors); any other is a failure
        pytest.skip("the gpt2 encoding files cannot be downloaded here")
    assert vocab_size_of("gpt2") == 50257


def test_where_documents_end_is_part_of_the_fingerprint(tmp_path):
    # One file holding "A...\x1eB..." and two files "A..." and "B...": different corpora (the
    # byte tokenizer joins documents with a blank line), so different fingerprints and tokens.
    (tmp_path / "one.txt").write_text("A" * 400 + "\x1e" + "B" * 400)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "1.txt").write_text("A" * 400)
    (tmp_path / "two" / "2.txt").write_text("B" * 400)
    one = prepare_data(text_cfg(tmp_path / "one.txt", tmp_path), block_size=32)
    two = prepare_data(text_cfg(tmp_path / "two" / "*.txt", tmp_path), block_size=32)
    assert one.fingerprint != two.fingerprint and not two.from_cache
    tokens = np.concatenate([two.train, two.val]).astype(np.uint8).tobytes()
    assert tokens[398:404] == b"AA\n\nBB"


def test_hf_glob_sees_added_and_edited_files(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("AZ" * 500)
    cfg = DataConfig(source="hf", dataset="text", data_files=str(tmp_path / "d" / "*.txt"),
                     cache_dir=str(tmp_path / "cache"))
    first = prepare_data(cfg, block_size=32)
    assert prepare_data(cfg, block_size=32).from_cache
    (tmp_path / "d" / "b.txt").write_text("B" * 5000)  # the glob now matches a second file
    second = prepare_data(cfg, block_size=32)
    assert not second.from_cache and second.fingerprint != first.fingerprint
    assert second.n_train_tokens + second.n_val_tokens == 6002  # both files, a blank line between


def test_a_folder_saved_with_save_to_disk_is_read_and_its_edits_make_new_tokens(
        tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    one = datasets.Dataset.from_dict({"body": [f"document {i} " * 20 for i in range(6)]})
    one.save_to_disk(str(tmp_path / "one"))
    cfg = DataConfig(source="hf", dataset=str(tmp_path / "one"), text_column="body",
                     cache_dir=str(tmp_path / "cache"))
    # load_dataset refuses a Dataset saved so ("use load_from_disk"); a run read nothing.
    assert read_documents(cfg) == [f"document {i} " * 20 for i in range(6)]
    assert read_documents(cfg.model_copy(update={"max_documents": 2})) == [
        f"document {i} " * 20 for i in range(2)]
    first = prepare_data(cfg, block_size=16)
    assert prepare_data(cfg, block_size=16).from_cache
    # Saved again with other text: the cache entry was keyed on the folder's name alone, and
    # served the old tokens.
    datasets.Dataset.from_dict({"body": ["other text " * 40] * 6}).save_to_disk(
        str(tmp_path / "one"))
    second = prepare_data(cfg, block_size=16)
    assert not second.from_cache and second.fingerprint != first.fingerprint

    splits = datasets.DatasetDict({"train": one, "held": one.select(range(2))})
    splits.save_to_disk(str(tmp_path / "splits"))
    held = cfg.model_copy(update={"dataset": str(tmp_path / "splits"), "split": "held"})
    assert read_documents(held) == [f"document {i} " * 20 for i in range(2)]
    with pytest.raises(DataError, match=r"data.split: 'test' is not a split of the saved "
                                        r"dataset .*splits'; its splits: train, held"):
        read_documents(held.model_copy(update={"split": "test"}))
    # Files and a config name are not read from such a folder: said (a missing file named in
    # data_files trained the saved rows without a word, and `show` named the file).
    from scaletune.trainer.data import unread_note

    named = held.model_copy(update={"data_files": "x.jsonl", "name": "foo"})
    assert unread_note(named) == (
        f"data.data_files, data.name: not read, as {named.dataset} is a dataset saved with "
        "save_to_disk, loaded as it was saved (data.split picks one of its splits): they are "
        "ignored")
    assert read_documents(named) == read_documents(held)
    assert unread_note(cfg) is None


def test_a_local_dataset_s_fingerprint_is_read_as_the_run_will_find_it(tmp_path, monkeypatch):
    import datasets

    from scaletune.trainer.data import read_fingerprint

    # A study moved with its saved dataset: the commands that read it compare the fingerprint
    # of the data where the study file now says with the one its trials trained on; a dataset
    # read as not known, and the record's old place was used (export wrote the gone path).
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    datasets.Dataset.from_dict({"body": [f"document {i} " * 30 for i in range(8)]}).save_to_disk(
        str(tmp_path / "saved"))
    (tmp_path / "docs.jsonl").write_text("".join(f'{{"body": "line {i} of the file"}}\n'
                                                 for i in range(40)))
    saved = DataConfig(source="hf", dataset=str(tmp_path / "saved"), text_column="body",
                       cache_dir=str(tmp_path / "cache"))
    files = DataConfig(source="hf", dataset="json", data_files=str(tmp_path / "docs.jsonl"),
                       text_column="body", cache_dir=str(tmp_path / "cache"))
    for cfg in (saved, files):
        assert read_fingerprint(cfg) is None  # validate leaves a dataset to the run
        found = read_fingerprint(cfg, local_datasets=True)
        assert found == prepare_data(cfg, block_size=8).fingerprint
    # Not a local dataset, or one larger than the read is allowed: not known.
    hub = DataConfig(source="hf", dataset="org/corpus", cache_dir=str(tmp_path / "cache"))
    assert read_fingerprint(hub, local_datasets=True) is None
    monkeypatch.setattr(scaletune.trainer.data, "CHECK_READ_LIMIT", 100)
    moved = saved.model_copy(update={"dataset": str(tmp_path / "saved-too")})
    os.rename(tmp_path / "saved", tmp_path / "saved-too")  # out of the cache's record
    assert read_fingerprint(moved, local_datasets=True) is None


def test_a_dataset_folder_and_the_cache_are_taken_from_the_config_files_folder(tmp_path):
    (tmp_path / "corpus").mkdir()
    cfg = DataConfig(source="hf", dataset="corpus", cache_dir="tokens").resolved(tmp_path)
    assert (cfg.dataset, cfg.cache_dir) == (str(tmp_path / "corpus"), str(tmp_path / "tokens"))
    # A hub id stays one; a path written as one is the file's even before it exists.
    assert DataConfig(source="hf", dataset="org/corpus").resolved(tmp_path).dataset == "org/corpus"
    assert (DataConfig(source="hf", dataset="./later").resolved(tmp_path).dataset
            == str(tmp_path / "later"))
    # A folder that is not there is named before a run asks the hub for it.
    gone = DataConfig(source="hf", dataset="./gone").resolved(tmp_path)
    assert gone.file_errors() == [f"data.dataset: no folder {str(tmp_path / 'gone')!r} (a local "
                                  "dataset: a folder saved with save_to_disk, or of data files)"]
    assert DataConfig(source="hf", dataset="org/corpus").resolved(tmp_path).file_errors() == []


def test_validation_text_given_apart_is_held_out_whole_and_the_training_text_trained_whole(
        tmp_path):
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("training text. " * 400)
    val.write_text("held out, never trained on. " * 100)
    cfg = text_cfg(train, tmp_path, val_path=str(val))
    data = prepare_data(cfg, block_size=32)
    assert bytes(data.train.astype(np.uint8)) == train.read_bytes()
    assert bytes(data.val.astype(np.uint8)) == val.read_bytes()
    assert split_sizes(cfg) == (len(train.read_bytes()), len(val.read_bytes()))
    again = prepare_data(cfg, block_size=32)
    assert again.from_cache and again.fingerprint == data.fingerprint
    assert scaletune.trainer.data.read_fingerprint(cfg) == data.fingerprint  # validate's
    val.write_text("other held-out text. " * 100)  # the validation text is part of the data
    assert prepare_data(cfg, block_size=32).fingerprint != data.fingerprint
    val.write_text("")
    with pytest.raises(DataError, match=f"data.val_path {val}: the validation text holds no "
                                        r"text \(0 tokens\)"):
        prepare_data(cfg, block_size=32)
    assert text_cfg(train, tmp_path, val_path=str(tmp_path / "nowhere.txt")).file_errors()[0] \
        .startswith("data.val_path: ")


def saved_with_validation(tmp_path: Path, name: str, validation: dict[str, list]) -> DataConfig:
    """A DatasetDict saved with save_to_disk as tmp_path/name: a train split of four documents
    and a validation split of the columns ``validation``, read with val_split."""
    import datasets

    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["train text " * 50] * 4}),
        "validation": datasets.Dataset.from_dict(validation)}).save_to_disk(str(tmp_path / name))
    return DataConfig(source="hf", dataset=str(tmp_path / name), val_split="validation",
                      cache_dir=str(tmp_path / "cache"))


def test_a_split_of_a_saved_dataset_is_held_out_for_validation(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    cfg = saved_with_validation(tmp_path, "splits", {"text": ["held out " * 50]})
    one = datasets.Dataset.from_dict({"text": ["train text " * 50] * 4})
    data = prepare_data(cfg, block_size=32)
    assert bytes(data.val.astype(np.uint8)) == ("held out " * 50).encode()
    assert len(data.train) == 4 * len("train text " * 50) + 3 * 2  # every document, separators
    from scaletune.trainer.data import column_problem

    assert column_problem(cfg.model_copy(update={"val_split": "test"})) == (
        f"data.val_split: 'test' is not a split of the saved dataset {str(tmp_path / 'splits')!r};"
        " its splits: train, validation")
    one.save_to_disk(str(tmp_path / "one"))  # no splits: it would validate on its training text
    single = cfg.model_copy(update={"dataset": str(tmp_path / "one")})
    assert column_problem(single).startswith("data.val_split: ")
    with pytest.raises(DataError, match="is one dataset saved with save_to_disk, without splits"):
        prepare_data(single, block_size=32)


def test_a_dataset_folder_of_the_current_folder_alone_is_refused(tmp_path, monkeypatch):
    # `dataset: corpus` with no corpus/ beside the config file trained on the corpus/ of the
    # folder the command ran in: the study's data followed the folder.
    (tmp_path / "here" / "corpus").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    cfg = DataConfig(source="hf", dataset="corpus").resolved(tmp_path / "project")
    assert cfg.dataset == "corpus"  # not beside the config file: not made a path
    (error,) = cfg.file_errors()
    assert error.startswith(f"data.dataset: 'corpus' is a folder of the folder this command runs "
                            f"in ({tmp_path / 'here'}), not of the config file's")


def test_a_file_that_gives_path_and_val_path_reads_text():
    # val_path is read by both sources: it made such a file "names both, and no source".
    assert DataConfig.model_validate({"path": "a.txt", "val_path": "b.txt"}).source == "text"
    hf = {"dataset": "json", "data_files": "a.jsonl", "val_path": "b.jsonl"}
    assert DataConfig.model_validate(hf).source == "hf"


def test_validation_files_of_a_local_builder_and_what_cannot_be_validation(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(f'{{"text": "training document {i}. {"x" * 200}"}}\n'
                             for i in range(40)))
    val.write_text("".join(f'{{"text": "held out {i}. {"y" * 200}"}}\n' for i in range(5)))
    cfg = DataConfig(source="hf", dataset="json", data_files=str(train), val_path=str(val),
                     cache_dir=str(tmp_path / "cache"), max_documents=10)
    # Rule: val_path gives a local builder's validation files (val_split had no split to name:
    # the files are one split), read whole, as max_documents is the training split's.
    data = prepare_data(cfg, block_size=16)
    assert bytes(data.val.astype(np.uint8)).decode().count("held out") == 5
    assert bytes(data.train.astype(np.uint8)).decode().count("training document") == 10
    for bad, said in [
            ({"val_split": "validation", "val_path": None}, "data.val_split: dataset: json reads "
             "its data_files as one split (train), which has no other: give the validation files "
             "as data.val_path"),
            ({"dataset": "org/corpus", "data_files": None}, "data.val_path: files are read with a "
             "local builder"),
            ({"val_path": str(train)}, "data.val_path: the validation data is the training data")]:
        with pytest.raises(ValueError, match=re.escape(said)):
            DataConfig.model_validate({**cfg.model_dump(), **bad})
    with pytest.raises(ValueError, match="data.val_split: the validation data is the training"):
        DataConfig(source="hf", dataset="org/corpus", split="validation", val_split="validation")
    # A validation text with nothing to learn is named by its own key (it was data.path).
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n" * 500)
    text = text_cfg(tmp_path / "train.jsonl", tmp_path, val_path=str(blank))
    with pytest.raises(DataError, match=rf"^data.val_path {re.escape(str(blank))}: "):
        scaletune.trainer.data.read_fingerprint(text)


def test_a_val_fraction_beside_validation_data_given_apart_is_noted_as_unused():
    from scaletune.trainer.data import unread_note

    # It passed without a word, and held out nothing.
    assert unread_note(DataConfig(path="a.txt", val_path="b.txt", val_fraction=0.2)) == (
        "data.val_fraction: not used, as the validation data is given apart (data.val_path)")
    assert unread_note(DataConfig(path="a.txt", val_fraction=0.2)) is None
    # A field two sources read names both (it named the one it found last).
    assert unread_note(DataConfig(source="builtin", val_path="b.txt")).startswith(
        "data.val_path: read only when data.source is 'hf' or 'text'")


def test_json_lines_that_are_not_utf8_are_named_by_the_run(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "caf\u00e9 cr\u00e8me"}\n'.encode("latin-1") * 50)
    cfg = DataConfig(source="hf", dataset="json", data_files=str(latin),
                     cache_dir=str(tmp_path / "cache"))
    # Rule: the file and its column are named (it was "data: 'utf-8' codec can't decode ...",
    # no file, from deep in pyarrow, which reads any bytes into a string column).
    with pytest.raises(DataError, match=rf"^data.data_files {re.escape(repr(str(latin)))}: its "
                                        r"'text' column is not UTF-8 text \('utf-8' codec"):
        read_documents(cfg)


def test_what_is_wrong_with_a_saved_datasets_validation_split_names_that_split(
        tmp_path, monkeypatch):
    import datasets

    from scaletune.trainer.data import column_problem

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    cfg = saved_with_validation(tmp_path, "nocol", {"body": ["held out " * 50]})
    # It read "'text' is not a column of '.../nocol'", which the training split has.
    said = (f"data.text_column: 'text' is not a column of the split 'validation' of "
            f"{str(tmp_path / 'nocol')!r} (data.val_split), which has ['body']")
    assert column_problem(cfg) == said
    with pytest.raises(DataError, match=re.escape(said)):
        prepare_data(cfg, block_size=32)
    # An empty split: `datasets` cannot load the folder at all (an IndexError from inside it).
    empty = saved_with_validation(tmp_path, "empty", {"text": []})
    said = (f"data.val_split: the split 'validation' of the saved dataset "
            f"{str(tmp_path / 'empty')!r} holds no rows")
    assert column_problem(empty) == said
    with pytest.raises(DataError, match=re.escape(said)):
        prepare_data(empty, block_size=32)
    # A split named for a dataset saved without splits was ignored: it read the whole dataset.
    datasets.Dataset.from_dict({"text": ["train text " * 50] * 4}).save_to_disk(
        str(tmp_path / "one"))
    one = DataConfig(source="hf", dataset=str(tmp_path / "one"), split="test",
                     cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"^data.split: 'test' names a split, and .* is one "
                                        r"dataset saved with save_to_disk, without splits"):
        read_documents(one)
    assert column_problem(one).startswith("data.split: 'test' names a split")


def test_validate_reads_a_local_builders_validation_files_as_its_training_files(tmp_path):
    from scaletune.trainer.data import column_problem

    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text('{"text": "training document"}\n' * 40)
    val.write_text("not json\n")
    cfg = DataConfig(source="hf", dataset="json", data_files=str(train), val_path=str(val))
    assert column_problem(cfg).startswith(f"data.val_path: {str(val)!r} line 1 is not JSON")
    val.write_text('{"body": "held out"}\n')
    assert column_problem(cfg) == (f"data.text_column: 'text' is not a column of {str(val)!r} "
                                   "(data.val_path), which has ['body']")
    val.write_text('{"text": "held out"}\n')
    assert column_problem(cfg) is None


def test_a_cache_write_removes_what_killed_writes_left_and_no_write_in_progress(tmp_path):
    # kill -9 between a token file's write and its rename left a temporary file of the token
    # file's size, which nothing removed (a new copy with each kill).
    import os
    import time

    from scaletune.trainer.data import STALE_WRITE_S, _write_atomic

    target = tmp_path / "abc-file-123.u16.bin"
    stale, fresh = tmp_path / f"{target.name}.k1ll3d.tmp", tmp_path / f"{target.name}.wr1t1ng.tmp"
    other = tmp_path / "another.u16.bin.k1ll3d.tmp"
    for left in (stale, fresh, other):
        left.write_bytes(b"\0" * 100)
    old = time.time() - STALE_WRITE_S - 60
    for left in (stale, other):
        os.utime(left, (old, old))
    _write_atomic(target, b"tokens")
    assert target.read_bytes() == b"tokens"
    # The stale one of this file goes; one another process may be writing now stays, as does
    # one of another file.
    assert not stale.exists() and fresh.exists() and other.exists()
