"""The Containerfile, read without a container engine: hadolint (from PyPI, binary in
the wheel), and the rules of the image that hadolint does not know."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobtemplates_support import CONTAINERFILE, REPO, cargo_package, copy_args, env_pairs, parse_containerfile

REQUIRED_LABELS = {
    "org.opencontainers.image.title": "text",
    "org.opencontainers.image.description": "text",
    "org.opencontainers.image.source": "url",
    "org.opencontainers.image.licenses": "spdx",
    "org.opencontainers.image.version": "text",  # "${VERSION}": checked below
}


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint not installed: pip install -r job-templates/tests/requirements.txt"
    return exe


def run_hadolint(path: Path) -> tuple[int, list[dict]]:
    args = [hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style"]
    for label, schema in REQUIRED_LABELS.items():
        args += ["--require-label", f"{label}:{schema}"]
    proc = subprocess.run([*args, str(path)], capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_hadolint_finds_nothing():
    rc, findings = run_hadolint(CONTAINERFILE)
    assert findings == [] and rc == 0, "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_does_lint(tmp_path):
    """The same call flags a Containerfile with known faults (so a silent pass above
    means something)."""
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install -y curl\nCMD turnbench run\n")
    rc, findings = run_hadolint(bad)
    codes = {f["code"] for f in findings}
    assert rc != 0
    assert {"DL3007", "DL3008", "DL3025", "DL3049"} <= codes, codes


INSTRUCTIONS, STAGES = parse_containerfile()
BUILDER = next(s for s in STAGES if s.name == "builder")
FINAL = STAGES[-1]


def test_multi_stage_to_an_empty_image():
    assert len(STAGES) == 2
    assert FINAL.image == "scratch"
    # Nothing can run in scratch: it holds what COPY puts there, and metadata.
    assert {i.keyword for i in FINAL.instructions} <= {"ARG", "LABEL", "COPY", "ENV", "USER", "ENTRYPOINT", "CMD"}
    for c in FINAL.all("COPY"):
        flags, _, _ = copy_args(c.args)
        assert flags.get("from") == "builder", f"line {c.line}: the final stage copies from the builder only"
    assert not [i for i in INSTRUCTIONS if i.keyword == "ADD"], "COPY, not ADD"


def test_builder_makes_a_static_musl_binary():
    image = BUILDER.image
    # A pinned Rust version on Alpine, whose host triple is the musl target.
    assert re.fullmatch(r"docker\.io/library/rust:1\.\d+-alpine3\.\d+", image), image
    env = {}
    for e in BUILDER.all("ENV"):
        env.update(env_pairs(e.args))
    assert "-C target-feature=+crt-static" in env["RUSTFLAGS"]
    runs = [r.args for r in BUILDER.all("RUN")]
    assert all("cargo build --release --locked" in r for r in runs)
    assert any("readelf -d" in r and "NEEDED" in r for r in runs), "the build checks that the binary is static"


def test_the_rust_image_is_new_enough_for_the_lockfile():
    """The builder's Rust must build Cargo.lock: at least the newest rust-version of any
    locked dependency (measured when this was written: 1.88), and at least the crate's own."""
    minor = int(re.search(r"rust:1\.(\d+)", BUILDER.image)[1])
    own = int(cargo_package()["rust-version"].split(".")[1])
    assert minor >= max(88, own)


def test_dependencies_are_built_before_the_sources_are_copied():
    """Layer caching: Cargo.toml and Cargo.lock, then a RUN building the dependencies,
    then src/. A code change then reuses the dependency layer."""
    seq = []
    for ins in BUILDER.instructions:
        if ins.keyword == "COPY":
            _, sources, _ = copy_args(ins.args)
            seq.append(("COPY", tuple(sources)))
        elif ins.keyword == "RUN":
            seq.append(("RUN", "cargo build" in ins.args))
    assert seq[:4] == [("COPY", ("Cargo.toml", "Cargo.lock")), ("RUN", True), ("COPY", ("src",)), ("RUN", True)]
    # The placeholder's fingerprints go, else cargo keeps the placeholder binary.
    assert ".fingerprint/turnbench-" in BUILDER.all("RUN")[0].args


def test_runs_as_numeric_non_root_user_in_group_zero():
    (user,) = FINAL.all("USER")
    m = re.fullmatch(r"(\d+):(\d+)", user.args)
    assert m, f"USER {user.args}: numeric UID:GID, so runAsNonRoot can check it"
    assert int(m[1]) != 0 and int(m[2]) == 0


def test_entrypoint_and_default_command():
    (ep,) = FINAL.all("ENTRYPOINT")
    (cmd,) = FINAL.all("CMD")
    assert json.loads(ep.args) == ["/turnbench"]
    # The default command runs the benchmark: a Job only sets TURNBENCH_* variables.
    assert json.loads(cmd.args) == ["run"]
    copied = [copy_args(c.args)[2] for c in FINAL.all("COPY")]
    assert "/turnbench" in copied


def test_oci_labels_match_cargo_toml():
    pkg = cargo_package()
    labels = {}
    for lab in FINAL.all("LABEL"):
        labels.update(env_pairs(lab.args))
    args = {}
    for a in FINAL.all("ARG"):
        k, _, v = a.args.partition("=")
        args[k] = v
    assert labels["org.opencontainers.image.title"] == pkg["name"]
    assert labels["org.opencontainers.image.description"] == pkg["description"]
    assert labels["org.opencontainers.image.source"] == pkg["repository"]
    assert labels["org.opencontainers.image.licenses"] == pkg["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert args["VERSION"] == pkg["version"]


def test_build_context_leaves_out_target():
    ignore = (REPO / ".dockerignore").read_text().split()
    assert "target" in ignore or "target/" in ignore or "/target" in ignore


@pytest.mark.parametrize("ins", [i for i in BUILDER.all("RUN")], ids=lambda i: f"line{i.line}")
def test_run_steps_work_in_a_posix_shell(ins):
    """The test of the static binary runs these steps on the host's sh: no bashisms,
    no pipes (hadolint's DL4006 would ask for pipefail, which busybox sh and dash differ on)."""
    assert "|" not in ins.args.replace("||", "")
    subprocess.run(["sh", "-n", "-c", ins.args], check=True)
