"""The code-location image deploys `fraud_assets`, not the embedded AWS stack (`fraud_assets_local`),
and its code location loads without it.

No Docker daemon is needed: the image's file set is built the way `docker build` builds it (the
Dockerfile's COPY lines over the context that .dockerignore leaves) into a temporary directory, and
a fresh interpreter loads the code location from there with the locked dependencies' site-packages
on its path but without `site` (so no .pth file runs: not the editable install of this checkout,
which is what would make `fraud_assets_local` importable).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore's matching for the patterns the file uses: a path is out when it or one of its
    parent folders matches a pattern (`**/` matches any depth)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], pattern[3:]):
                return True
    return False


def copy_sources() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY in the Dockerfile, in order."""
    copies = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            assert not any(w.startswith("--") for w in words[1:]), f"a COPY this test does not model: {line}"
            copies.append((words[1:-1], words[-1]))
    return copies


def build_file_set(target: Path) -> list[str]:
    """The files the Dockerfile copies into its WORKDIR, under `target`; returns their relative paths."""
    patterns = dockerignore_patterns()
    copied = []
    for sources, destination in copy_sources():
        for source in sources:
            path = ROOT / source
            if ignored(source, patterns):
                continue
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if ignored(relative, patterns):
                    continue
                # `COPY x ./x` (a folder to its own name) or `COPY a b ./` (files into the workdir).
                inside = relative if destination in ("./", ".") else destination.removeprefix("./") + relative[len(source) :]
                (target / inside).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target / inside)
                copied.append(inside)
    return copied


LOAD = """
import importlib.util, json, sys
import fraud_assets.definitions
loaded = fraud_assets.definitions.defs()
jobs = sorted(job.name for job in loaded.resolve_all_job_defs())
print(json.dumps({
    "package": fraud_assets.__file__,
    "local_stack_importable": importlib.util.find_spec("fraud_assets_local") is not None,
    "local_modules": sorted(m for m in sys.modules if m.startswith(("fraud_assets_local", "fraud_assets.local"))),
    "moto_imported": any(m == "moto" or m.startswith("moto.") for m in sys.modules),
    "jobs": jobs,
    "assets": len(list(loaded.resolve_all_asset_keys())),
}))
"""


def test_the_image_file_set_leaves_the_local_stack_out(tmp_path):
    copied = build_file_set(tmp_path)
    assert any(p.startswith("fraud_assets/defs/") for p in copied) and "infra/fraud-detection.yaml" in copied
    assert "glue_scripts/fraud_data_prep.py" in copied
    assert not [p for p in copied if p.startswith(("fraud_assets_local/", "fraud_assets/local/"))]
    assert not [p for p in copied if p.startswith(("fraud_assets_tests/", "benchmarks/")) or "__pycache__" in p]


def test_the_images_code_location_loads_without_the_local_stack(tmp_path):
    image = tmp_path / "opt" / "fraud_assets"
    image.mkdir(parents=True)
    build_file_set(image)
    site_packages = sysconfig.get_paths()["purelib"]
    # The image's environment (Dockerfile ENV) and nothing of this machine's AWS or stack settings.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(image), site_packages]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "FRAUD_FIRST_DAY": "",
    }
    (tmp_path / "dagster_home").mkdir()
    # -S: no site module, so no .pth file (the editable install's finder) runs; the working
    # directory is the image's WORKDIR, as for `dagster api grpc --module-name fraud_assets.definitions`.
    result = subprocess.run([sys.executable, "-S", "-c", LOAD], cwd=image, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(loaded["package"]).resolve().is_relative_to(image.resolve())  # the copied package, not this checkout
    assert loaded["local_stack_importable"] is False and loaded["local_modules"] == []
    assert loaded["moto_imported"] is False  # nothing the location loads needs moto either
    assert {"training_job", "inference_job"} <= set(loaded["jobs"]) and loaded["assets"] > 20
