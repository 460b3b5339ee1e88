"""Every (from, to) pair of job states, on real folders: the nine edges move the folder, every other
pair raises InvalidTransition and leaves the job where it was. An accepting job starts in its intake
transaction's folder, as intake assembles it; every other state is a share folder."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import entries

from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import InvalidTransition, JobState, move

S = JobState
EDGES = {
    (S.ACCEPTING, S.STAGING), (S.ACCEPTING, S.FAILED), (S.ACCEPTING, S.DONE),
    (S.STAGING, S.PROCESSING),
    (S.PROCESSING, S.DONE), (S.PROCESSING, S.FAILED), (S.PROCESSING, S.STAGING), (S.PROCESSING, S.PROCESSING),
    (S.FAILED, S.STAGING),
}
PAIRS = list(itertools.product(JobState, JobState))


def _folder(root: Path, state: JobState) -> Path:
    share = Share(root)
    return share.transaction("t1") if state is S.ACCEPTING else share.folder(state)


def _job(root: Path, state: JobState) -> Job:
    Share(root).prepare()
    name = "j1@old" if state is S.PROCESSING else "j1"
    path = _folder(root, state) / name
    path.mkdir(parents=True)
    (path / "marker").write_text("kept")
    return Job(root=root, state=state, path=path)


@pytest.mark.parametrize(("source", "to"), PAIRS, ids=[f"{a.value}-{b.value}" for a, b in PAIRS])
def test_every_pair_of_states(root: Path, source: JobState, to: JobState) -> None:
    job = _job(root, source)
    if (source, to) in EDGES:
        moved = move(job, to, "table test", owner="new")
        assert moved.state is to and moved.id == "j1"
        assert (moved.path / "marker").read_text() == "kept" and not job.path.exists()
        assert moved.path.parent == root / to.folder
    else:
        with pytest.raises(InvalidTransition):
            move(job, to, "table test", owner="new")
        assert (job.path / "marker").read_text() == "kept"
        assert entries(_folder(root, to)) == ([job.name] if to is source else [])


def test_an_accepting_job_has_no_state_folder() -> None:
    """Nothing can list, find or move into "the accepting folder": each transaction has its own."""
    with pytest.raises(ValueError, match="transaction"):
        _ = S.ACCEPTING.folder
