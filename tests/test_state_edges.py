"""Every (from, to) pair of job states, on real folders: the nine edges move the folder, every other
pair raises InvalidTransition and leaves the job where it was."""

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
    (S.INBOX, S.STAGING), (S.INBOX, S.FAILED), (S.INBOX, S.DONE),
    (S.STAGING, S.PROCESSING),
    (S.PROCESSING, S.DONE), (S.PROCESSING, S.FAILED), (S.PROCESSING, S.STAGING), (S.PROCESSING, S.PROCESSING),
    (S.FAILED, S.STAGING),
}
PAIRS = list(itertools.product(JobState, JobState))


def _job(root: Path, state: JobState) -> Job:
    Share(root).prepare()
    name = "j1@old" if state is S.PROCESSING else "j1"
    path = root / state.folder / name
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
        assert entries(root / to.folder) == ([job.name] if to is source else [])
