"""The code part of the reuse key: a rerun of edited code is never taken for a run of the
committed code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ranking.training.tracking import code_version

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                   check=True, capture_output=True)  # fmt: skip


def test_uncommitted_changes_to_the_training_code_change_the_version(tmp_path: Path) -> None:
    (tmp_path / "ranking").mkdir()
    model = tmp_path / "ranking" / "model.py"
    model.write_text("ROUNDS = 400\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    committed = code_version(tmp_path)
    assert len(committed) == 40 and "+" not in committed

    (tmp_path / "notes.txt").write_text("not training code")
    assert code_version(tmp_path) == committed

    model.write_text("ROUNDS = 5\n")
    edited = code_version(tmp_path)
    assert edited.startswith(committed + "+dirty.")
    model.write_text("ROUNDS = 6\n")
    assert code_version(tmp_path) not in (committed, edited)

    model.write_text("ROUNDS = 400\n")
    new_file = tmp_path / "ranking" / "extra.py"
    new_file.write_text("A = 1\n")
    with_new = code_version(tmp_path)
    new_file.write_text("A = 2\n")
    assert committed != with_new != code_version(tmp_path)


def test_outside_a_checkout_the_version_is_unknown(tmp_path: Path) -> None:
    assert code_version(tmp_path) == "unknown"
