"""The wheel carries the built web UI as package data: ``web/dist`` becomes ``crowdseg/web``.

Everything else is declared in pyproject.toml. ``make dist`` builds the UI first; the sdist carries
``web/dist`` (MANIFEST.in), so a wheel built from the sdist needs no Node.js. An editable install
(development) copies nothing: the gateway serves the repository's ``web/dist`` directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEB_DIST = Path(__file__).resolve().parent / "web" / "dist"


class BuildPyWithWebUI(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not (WEB_DIST / "index.html").is_file():
            raise SystemExit(
                f"crowdseg: {WEB_DIST} holds no built web UI; build it first: `make dist` does, "
                "or `cd web && npm ci && npm run build`"
            )
        target = Path(self.build_lib) / "crowdseg" / "web"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(WEB_DIST, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        target = Path(self.build_lib) / "crowdseg" / "web"
        if target.is_dir():
            outputs.extend(str(path) for path in target.rglob("*") if path.is_file())
        return outputs


setup(cmdclass={"build_py": BuildPyWithWebUI})
