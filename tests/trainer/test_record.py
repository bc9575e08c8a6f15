"""What a run records of the code that produced it (trainer.record)."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scaletune.trainer import record

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]


def repo(path: Path) -> str:
    """A git repository at path with one commit; its HEAD."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("a project of the user's\n")
    subprocess.run([*GIT, "init", "-q"], cwd=path, check=True)
    subprocess.run([*GIT, "add", "notes.txt"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                          check=True).stdout.strip()


def revision_of_copy_at(module_path: Path) -> str | None:
    """git_revision() of trainer/record.py copied to module_path, as that copy sees it."""
    module_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(record.__file__, module_path)
    spec = importlib.util.spec_from_file_location("record_copy", module_path)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    return copy.git_revision()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_an_installed_copy_inside_another_repository_records_no_revision(tmp_path):
    # Rule: the revision is scaletune's own commit or nothing. Installed into a virtual
    # environment inside the user's project, git found the project's repository and every run
    # recorded the project's commit as the code's.
    user = tmp_path / "project"
    repo(user)
    installed = user / ".venv/lib/python3.11/site-packages/scaletune/trainer/record.py"
    assert revision_of_copy_at(installed) is None
    # A checkout of scaletune (trainer/ at its top) records its commit; with uncommitted
    # changes, a digest of them, so that two different changes on one commit tell apart.
    checkout = tmp_path / "scaletune"
    head = repo(checkout)
    module = checkout / "trainer/record.py"
    assert revision_of_copy_at(module) == head
    revisions = []
    for text in ("one change\n", "another\n", "one change\n"):
        (checkout / "notes.txt").write_text(text)
        revisions.append(revision_of_copy_at(module))
    assert all(re.fullmatch(re.escape(head) + r"-dirty\.[0-9a-f]{12}", r) for r in revisions)
    assert revisions[0] != revisions[1] and revisions[0] == revisions[2]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_change_is_named_by_git_s_own_diff_whatever_the_user_s_git_config(tmp_path):
    # With diff.relative set, `git diff` run in trainer/ showed only trainer/'s changes: a run
    # with a changed file elsewhere recorded the bare commit. noprefix changed the digest of the
    # same change, and a textconv that fails (here `false`) lost the commit too.
    checkout = tmp_path / "scaletune"
    head = repo(checkout)
    module = checkout / "trainer/record.py"
    (checkout / "notes.txt").write_text("a change outside trainer/\n")
    plain = revision_of_copy_at(module)
    assert re.fullmatch(re.escape(head) + r"-dirty\.[0-9a-f]{12}", plain)
    (checkout / ".git/info/attributes").write_text("notes.txt diff=conv\n")
    for key, value in (("diff.relative", "true"), ("diff.noprefix", "true"),
                       ("diff.mnemonicPrefix", "true"), ("diff.conv.textconv", "false")):
        subprocess.run(["git", "config", key, value], cwd=checkout, check=True)
    assert revision_of_copy_at(module) == plain


def test_a_package_without_metadata_has_no_version_and_stops_nothing():
    # scaletune's folders put on the import path by hand (no install) have no package metadata:
    # a study's record says None for its version instead of failing to start.
    assert record.installed_version("scaletune-not-installed-here") is None
    assert record.installed_version("torch")
