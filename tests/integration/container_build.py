"""Offline container builds for the image test: podman/buildah with private storage.

The settings are the ones TOOLING.md found to work on these machines (runc, cgroupfs, file
events, overlay storage in a temp dir); nothing under /etc is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

BASE_IMAGE = "localhost/debian-py:bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
MISSING = re.compile(r"No matching distribution found for ([^\s;]+)")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", ".venv", ".pytest_cache", ".ruff_cache",
    ".hypothesis", "humtemp-data", "wheels", "build", "dist",
)


class Podman:
    """podman/buildah bound to a private config + storage under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "containers.conf").write_text(CONTAINERS_CONF)
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
            "TMPDIR": str(root),
        }

    def run(self, *args: str, check: bool = True, tool: str = "podman"
            ) -> subprocess.CompletedProcess[str]:
        """Run podman (or buildah) with the private settings."""
        res = subprocess.run([tool, *args], env=self.env, capture_output=True, text=True)
        if check and res.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args[:3])}: {res.stderr[-3000:]}")
        return res

    def inspect(self, ref: str) -> dict:
        """`podman inspect` of one image or container."""
        return json.loads(self.run("inspect", ref).stdout)[0]

    def logs(self, name: str) -> str:
        """Container output, for failure messages."""
        res = self.run("logs", name, check=False)
        return res.stdout + res.stderr

    def build(self, context: Path, tag: str, base: str) -> None:
        """Offline build: local base, wheels from the context, no network, no pulls."""
        self.run(
            "bud", "--isolation", "oci", "--network", "none", "--pull-never", "--layers=false",
            "--build-arg", f"BASE={base}",
            "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/src/wheels",
            "-t", tag, str(context), tool="buildah",
        )

    def cleanup(self) -> None:
        """Remove containers, images and the storage directory."""
        self.run("rm", "-a", "-f", "-t", "0", check=False)
        self.run("rmi", "-a", "-f", check=False)
        self.run("system", "reset", "-f", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def cache_dir() -> Path:
    """Where the mmdebstrap tarball is kept between runs on a developer machine."""
    return Path(os.environ.get("HUMTEMP_CACHE_DIR", Path.home() / ".cache" / "humtemp"))


def import_base_image(podman: Podman, scratch: Path) -> str:
    """mmdebstrap a minimal bookworm with python3 (cached tarball) and import it."""
    tarball = cache_dir() / "debian-py-bookworm.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = scratch / "base.tar"
        res = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm",
             str(partial)],
            capture_output=True, text=True,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        shutil.move(partial, tarball)
    podman.run("import", str(tarball), BASE_IMAGE)
    return BASE_IMAGE


def build_context(repo: Path, dest: Path) -> Path:
    """A copy of the repository (the Dockerfile's .dockerignore still decides what is sent)."""
    ctx = dest / "ctx"
    shutil.copytree(repo, ctx, ignore=COPY_IGNORE)
    return ctx


def build_wheels(repo: Path, wheels: Path, podman: Podman, base: str) -> None:
    """Wheels of humtemp, its dependencies and its build backend, for the image's python.

    pip evaluates environment markers for the interpreter it runs in: the host's 3.11.7 skips
    requirements the image's 3.11.2 needs (redis wants async-timeout below 3.11.3). So the
    image's own pip resolves against the wheel directory, and whatever it misses is added.
    """
    def pip_wheel(*reqs: str) -> None:
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), *reqs],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]

    pip_wheel(str(repo), "setuptools>=68", "wheel")
    for _ in range(10):
        res = podman.run(
            "run", "--rm", "--network", "none", "--pull", "never",
            "-v", f"{wheels}:/wheels:ro", base, "sh", "-c",
            "python3 -m venv /tmp/v && /tmp/v/bin/pip install --dry-run -q --no-index "
            "--find-links /wheels humtemp setuptools wheel",
            check=False,
        )
        if res.returncode == 0:
            return
        missing = MISSING.search(res.stdout + res.stderr)
        assert missing, res.stdout + res.stderr
        pip_wheel(missing.group(1))
    raise AssertionError("wheel set never became complete for the image's python")
