"""The package as an operator installs it: a base install runs intake and the watchdog without the worker
stack, a worker says what it lacks, and `lipsyncd init` writes the shipped files without overwriting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Roles, drop_job, env_for, wait_for

from daemon import skel

# a site hook that makes the worker extra's modules unimportable, as on a host that installed `lipsyncd` alone
BLOCKER = '''
import sys
class _NoWorkerStack:
    blocked = {"torch", "numpy", "skimage", "ffmpeg", "scipy"}
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: no worker extra)", name=name)
        return None
sys.meta_path.insert(0, _NoWorkerStack())
'''


@pytest.fixture
def bare_env(root: Path, tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return env_for(root, PYTHONPATH=str(site))


def test_the_blocker_really_hides_the_worker_stack(bare_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", "import numpy"], env=bare_env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "blocked: no worker extra" in done.stderr


def test_intake_and_watchdog_run_without_torch_numpy_or_scikit_image(root: Path, media_dir: Path, roles: Roles,
                                                                     bare_env: dict[str, str]) -> None:
    intake = roles.start("intake", env=bare_env)
    watchdog = roles.start("watchdog", env={**bare_env, "LIPSYNCD_WATCHDOG_GPU_CHECK": "false",
                                            "LIPSYNCD_WATCHDOG_INTERVAL_S": "0.5"})
    wait_for(lambda: (root / "inbox").is_dir(), 60, "share folders")
    drop_job(root, "lesson", media_dir / "a.wav", media_dir / "v.mp4")
    wait_for(lambda: any((root / "staging").glob("lesson*")), 90, "the job accepted into staging/")
    wait_for(lambda: (root / ".lipsyncd" / "roles" / "watchdog.json").is_file(), 90, "the watchdog's status")
    assert intake.poll() is None and watchdog.poll() is None, roles.log_of(intake) + roles.log_of(watchdog)
    for proc in (intake, watchdog):
        assert "blocked: no worker extra" not in roles.log_of(proc)


def test_a_worker_without_its_stack_exits_78_naming_the_extra(root: Path, bare_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "daemon", "worker"], cwd=REPO, env=bare_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 78
    assert "missing torch, numpy, scikit-image, ffmpeg-python" in done.stderr
    assert "pip install 'lipsyncd[worker]'" in done.stderr


def test_doctor_says_what_a_worker_lacks(root: Path, bare_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "daemon", "doctor"], cwd=REPO, env=bare_env, capture_output=True,
                          text=True, timeout=120)
    line = next(x for x in done.stdout.splitlines() if "worker stack" in x)
    assert line.startswith("SKIP worker stack:") and "torch, numpy, scikit-image, ffmpeg-python" in line
    assert "lipsyncd[worker]" in line


def test_init_writes_config_units_and_program_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "etc-lipsyncd"
    lipsyncd = Path(sys.executable).parent / "lipsyncd"
    first = subprocess.run([str(lipsyncd), "init", str(target)], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted(skel.names())
    assert {"config.toml", "systemd/lipsyncd-worker@.service", "systemd/lipsyncd-intake.service",
            "systemd/lipsyncd-watchdog.service", "systemd/lipsyncd.target",
            "supervisor/lipsyncd.conf"} <= set(written)
    assert (target / "config.toml").read_text() == (REPO / "config.toml").read_text()  # the commented one
    unit = (target / "systemd" / "lipsyncd-worker@.service").read_text()
    assert f"ExecStart={lipsyncd} worker --gpu %i --config {target}/config.toml" in unit
    program = (target / "supervisor" / "lipsyncd.conf").read_text()
    assert f"command={lipsyncd} intake --config {target}/config.toml" in program
    load = subprocess.run([str(lipsyncd), "--config", str(target / "config.toml"), "config"], capture_output=True,
                          text=True, timeout=60)
    assert load.returncode == 0, load.stderr  # the written config loads as it is

    (target / "config.toml").write_text("# the operator's own edits\n")
    (target / "systemd" / "lipsyncd.target").unlink()
    again = subprocess.run([str(lipsyncd), "init", str(target)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 73  # EX_CANTCREAT
    assert "not overwriting" in again.stderr and str(target / "config.toml") in again.stderr
    assert (target / "config.toml").read_text() == "# the operator's own edits\n"
    assert not (target / "systemd" / "lipsyncd.target").exists()  # all or nothing


def test_init_print_shows_one_shipped_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "daemon", "init", "--print", "config.toml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == (REPO / "config.toml").read_text()
    wrong = subprocess.run([sys.executable, "-m", "daemon", "init", "--print", "nope"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "supervisor/lipsyncd.conf" in wrong.stderr


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_without_the_worker_extra_runs_intake_and_watchdog(
        root: Path, media_dir: Path, tmp_path: Path) -> None:
    """What an operator of an intake/watchdog host does: build the wheel, `pip install` it (base
    dependencies only, from the package index), `lipsyncd init`, `doctor`, and run the roles."""
    import zipfile

    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("lipsyncd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"daemon/skel/config.toml", "daemon/skel/systemd/lipsyncd-worker@.service",
            "daemon/skel/supervisor/lipsyncd.conf", "daemon/py.typed"} <= names
    assert "License-Expression: MIT" in meta and any(n.endswith("licenses/LICENSE") for n in names)
    assert 'Requires-Dist: torch>=2.1; extra == "worker"' in meta
    assert not [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line
                and any(heavy in line for heavy in ("torch", "numpy", "scikit-image", "ffmpeg-python"))]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True, timeout=600)
    lipsyncd = venv / "bin" / "lipsyncd"
    etc = tmp_path / "etc"
    assert subprocess.run([str(lipsyncd), "init", str(etc)], capture_output=True, timeout=120).returncode == 0
    assert (etc / "config.toml").read_text() == (REPO / "config.toml").read_text()
    env = {k: v for k, v in env_for(root).items() if k != "PYTHONPATH"}
    env["LIPSYNCD_WORKER_ENGINE"] = "warp"
    doctor = subprocess.run([str(lipsyncd), "doctor", "--fix", "--json"], env=env, capture_output=True, text=True,
                            timeout=120)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["share"]["status"] == "PASS" and checks["worker stack"]["status"] == "SKIP"
    assert "torch" in checks["worker stack"]["detail"]
    procs = [subprocess.Popen([str(lipsyncd), role], env={**env, "LIPSYNCD_WATCHDOG_GPU_CHECK": "false"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
             for role in ("intake", "watchdog")]
    try:
        drop_job(root, "lesson", media_dir / "a.wav", media_dir / "v.mp4")
        wait_for(lambda: any((root / "staging").glob("lesson*")), 120, "the job accepted by the wheel's intake")
        wait_for(lambda: (root / ".lipsyncd" / "roles" / "watchdog.json").is_file(), 120, "the watchdog's status")
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
