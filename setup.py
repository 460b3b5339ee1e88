"""Copies the operator files kept at the repository's top (config.toml, systemd/, supervisor/) into the
built package as `daemon/skel/`, so a wheel carries them and `lipsyncd init` can write them out.

Everything else about the package is declared in pyproject.toml. In a source checkout (an editable
install) `daemon.skel` finds the same files at the top of the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SKEL = ("config.toml", "systemd", "supervisor")


class BuildWithSkel(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # the checkout's own files are used in place
        target = Path(self.build_lib) / "daemon" / "skel"
        for name in SKEL:
            src, dst = HERE / name, target / name
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithSkel})
