"""Shared by the tests of job-templates/ and the Containerfile: paths, the manifests,
a small Containerfile parser, and what a test run needs of Cargo.toml."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TESTS_DIR = Path(__file__).resolve().parent
JOB_DIR = TESTS_DIR.parent
REPO = JOB_DIR.parent
CONTAINERFILE = REPO / "Containerfile"
README = JOB_DIR / "README.md"

BEGIN_MARKER = "# BEGIN TURNBENCH USER INFO"
END_MARKER = "# END TURNBENCH USER INFO"

# The UID OpenShift's restricted-v2 SCC would pick from a namespace's range, with GID 0.
OPENSHIFT_UID = 1000740000
OPENSHIFT_GID = 0


def cargo_package() -> dict:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]


def manifest_files() -> list[Path]:
    """Every YAML file of job-templates/ that Kubernetes would get (not kustomization
    files, not the tests)."""
    files = [
        p
        for p in sorted(JOB_DIR.rglob("*.y*ml"))
        if TESTS_DIR not in p.parents and p.name not in ("kustomization.yaml", "kustomization.yml")
    ]
    assert files, f"no manifests found under {JOB_DIR}"
    return files


def load_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in JOB_DIR.rglob("kustomization.yaml") if TESTS_DIR not in p.parents)


def render_kustomization(directory: Path) -> list[dict]:
    """What `kubectl apply -k DIR` sends, for the subset of kustomize used here:
    `resources` (files) and `images` (name -> newName:newTag). Anything else fails the
    test, so a new kustomize feature gets a test when it is used."""
    kust = load_docs(directory / "kustomization.yaml")[0]
    allowed = {"apiVersion", "kind", "resources", "images"}
    unknown = set(kust) - allowed
    assert not unknown, f"{directory}/kustomization.yaml uses {sorted(unknown)}, which this test does not render"
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
    docs: list[dict] = []
    for res in kust["resources"]:
        path = directory / res
        assert path.is_file(), f"{directory}/kustomization.yaml lists {res}, which does not exist"
        docs.extend(load_docs(path))
    images = {i["name"]: i for i in kust.get("images", [])}
    for doc in docs:
        for c in pod_containers(doc):
            repo, tag = split_image(c["image"])
            override = images.get(repo)
            if override:
                c["image"] = f'{override.get("newName", repo)}:{override.get("newTag", tag)}'
    return docs


def split_image(ref: str) -> tuple[str, str]:
    """`registry:5000/name:tag` -> (`registry:5000/name`, `tag`); no tag: "latest"."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") == "Job":
        return doc["spec"]["template"]["spec"]
    return None


def pod_containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def expand_env_refs(value: str, env: dict[str, str]) -> str:
    """What the kubelet does to an `env` value: `$(NAME)` becomes the value of a
    variable defined before it, `$$` a literal `$`; a reference to an undefined
    variable stays as written."""

    def sub(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        return env.get(m[1], m[0])

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)


def container_env(job: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    """The environment the container gets from envFrom ConfigMaps and env values
    (Secret references as `<secret:NAME/KEY>`), `$(NAME)` references expanded."""
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        env.update(configmaps[src["configMapRef"]["name"]]["data"])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand_env_refs(e["value"], env)
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = f"<secret:{ref['name']}/{ref['key']}>"
    return env


def set_env(docs: list[dict], values: dict[str, str]) -> list[dict]:
    """What `oc set env NAME=VALUE ...` does to each Job's containers: an entry of that
    name gets the value (in place, a valueFrom dropped), a new name is appended."""
    for doc in docs:
        for c in pod_containers(doc):
            env = c.setdefault("env", [])
            for name, value in values.items():
                entry = next((e for e in env if e["name"] == name), None)
                if entry is None:
                    env.append({"name": name, "value": value})
                else:
                    entry.pop("valueFrom", None)
                    entry["value"] = value
    return docs


def namespace_configmaps() -> dict[str, dict]:
    """Every ConfigMap of job-templates/ by name: what the namespace holds once they
    are applied, for a kustomization (indexed/) that uses them without applying them."""
    return {d["metadata"]["name"]: d for p in manifest_files() for d in load_docs(p) if d["kind"] == "ConfigMap"}


def job_env(kustomization_dir: Path, name: str) -> dict[str, str]:
    docs = render_kustomization(kustomization_dir)
    cms = {**namespace_configmaps(), **{d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}}
    (job,) = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == name]
    return container_env(job, cms)


def cpu_millis(q: str) -> float:
    q = str(q)
    return float(q[:-1]) if q.endswith("m") else float(q) * 1000


def mem_bytes(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(q))
    assert m, f"memory quantity {q!r}"
    return float(m[1]) * units.get(m[2] or "", 1)


# --- Containerfile ---------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_containerfile(path: Path = CONTAINERFILE) -> tuple[list[Instruction], list[Stage]]:
    """Instructions (comments dropped, `\\` continuations joined, also across comment
    lines, as BuildKit does) and the stages they make up."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = n
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        # Docker removes backslash-newline: the lines are joined as they are.
        text = "".join(pending).strip()
        pending = []
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(ins)
    return instructions, stages


def env_pairs(args: str) -> dict[str, str]:
    """`ENV A=1 B="two words"` (the legacy `ENV A 1` form is not used here)."""
    out = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        assert sep, f"ENV {args!r}: use the KEY=value form"
        out[key] = value
    return out


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    return flags, words[:-1], words[-1]


def extract_user_info(text: str) -> str:
    """The lines from BEGIN to END marker, both included."""
    lines = text.splitlines()
    begin = lines.index(BEGIN_MARKER)
    end = lines.index(END_MARKER, begin)
    return "\n".join(lines[begin : end + 1]) + "\n"
