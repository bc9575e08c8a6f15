"""tests/forked.py: processes forked from a server that imported the libraries once are started
as python and torchrun start them, and fresh ones where the server's imports read another
environment."""

from __future__ import annotations

import os

import pytest

from tests import forked

RANKS = """
import os, sys
# One write each: under torchrun the ranks share its output, and print's pieces, written apart
# where the output is unbuffered, came interleaved ("rankrank 1 of 2 ... 0 of 2 ...").
sys.stdout.write(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} "
                 f"{os.environ.get('CALLER')} {os.getcwd()}\\n")
sys.stderr.write(f"to stderr {os.environ['RANK']}\\n")
sys.exit(3 if os.environ["RANK"] == "1" else 0)
"""


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh"])
def test_ranks_get_torchruns_environment_their_own_output_and_exit_code(tmp_path, fresh):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    env = {"CALLER": "yes"}
    if fresh:  # read as torch is imported: the server's would be another
        env["OMP_NUM_THREADS"] = str(int(os.environ.get("OMP_NUM_THREADS", "1")) + 1)
        assert not forked.forkable({**os.environ, **env})
    done = forked.run(str(script), nproc=2, env=env, cwd=tmp_path)
    assert done.returncode == 1  # torchrun's, as rank 1 failed
    for rank in (0, 1):
        assert f"rank {rank} of 2 yes {tmp_path}" in done.stdout, done.stdout
        assert f"to stderr {rank}" in done.stderr, done.stderr
    assert "to stderr" not in done.stdout


def test_a_command_runs_as_its_module_and_its_atexit_functions_run(tmp_path):
    script = tmp_path / "ends.py"
    script.write_text("import atexit, sys\n"
                      "atexit.register(lambda: print('atexit ran'))\n"
                      "print('main is', __name__)\n"
                      "raise SystemExit(5)\n")
    done = forked.run(str(script), merged=True)
    assert done.returncode == 5
    assert done.stdout.splitlines() == ["main is __main__", "atexit ran"]
    # A module of the project, as `python -m` runs it.
    done = forked.run("-m", "scaletune.search.cli", "validate", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "missing.yaml" in done.stderr, done


def test_an_exit_with_a_message_prints_it_and_ends_with_1(tmp_path):
    script = tmp_path / "says.py"
    script.write_text("raise SystemExit('no such study')\n")
    done = forked.run(str(script))
    assert done.returncode == 1
    assert done.stderr.strip() == "no such study", done.stderr
