"""Every argument of every command explains itself, and `submit --json` hands a script the job's id."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Roles, env_for

from daemon.cli import build_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_of_every_command_has_help_and_names_its_choices_and_units() -> None:
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"up", "intake", "worker", "watchdog", "status", "submit", "retry", "doctor", "probe", "init",
            "config"} <= set(commands)
    for name, sub in [("lipsyncd", parser), *commands.items()]:
        assert sub.description or name == "lipsyncd", name
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.dest} has no help"
            if action.choices and action.dest != "log_level":
                assert action.metavar is None, f"{name} {action.dest}: its choices must show in the help"
    submit = commands["submit"].format_help()
    assert "{warp,wav2lip,copy}" in submit and "--timeout SECONDS" in submit
    assert "DEBUG, INFO, WARNING or ERROR" in commands["status"].format_help()


def test_submit_json_prints_the_job_id_intake_gave_and_with_wait_the_result(root: Path, media_dir: Path,
                                                                            roles: Roles) -> None:
    env = env_for(root)
    roles.intake_and_worker(root, env)
    run = [sys.executable, "-m", "daemon", "submit", "--json", "--name", "greeting"]
    accepted = subprocess.run([*run, str(media_dir / "a.wav"), str(media_dir / "v.mp4")], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180)
    assert accepted.returncode == 0, accepted.stderr
    out = json.loads(accepted.stdout)  # stdout is the JSON object and nothing else
    (job,) = out["jobs"]
    assert job["id"].startswith("greeting-") and job["state"] in ("staging", "processing", "done")
    # the job's folder as it is now: a worker may have claimed it already (processing/<id>@<owner>)
    folder = Path(job["path"]).name
    assert folder == job["id"] or (job["state"] == "processing" and folder.startswith(job["id"] + "@"))
    assert out["timed_out"] is False
    finished = subprocess.run([*run, "--wait", "--timeout", "150", str(media_dir / "a.wav"), str(media_dir / "a.wav")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    out = json.loads(finished.stdout)
    assert finished.returncode == 1 and out["jobs"][0]["state"] == "failed"  # sound only: no picture
    assert out["jobs"][0]["code"] and out["jobs"][0]["message"]
    assert (root / "failed" / out["jobs"][0]["id"]).is_dir()
