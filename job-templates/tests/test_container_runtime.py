"""The image, as far as it can be checked with no container engine.

The builder stage of the Containerfile is run on this host: its COPY and RUN steps, in
order, in target/container-build/ (cargo's target/ there is kept between runs, as a
layer cache would be), with CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu instead of the
builder image's musl triple, and the image's RUSTFLAGS (crt-static). The final stage is
then laid out as a root directory holding only what the Containerfile copies, plus what a
container runtime adds (/dev/null, /dev/urandom, /tmp) and the Job's volumes, and the
image's ENTRYPOINT and CMD run there with the Job's environment, as UID 1000740000 and
GID 0 (what OpenShift's restricted-v2 SCC does), no capabilities and no_new_privs.

Needs root (chroot, mknod); skipped otherwise. CI runs as root.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from jobtemplates_support import (
    JOB_DIR,
    OPENSHIFT_GID,
    OPENSHIFT_UID,
    README,
    REPO,
    cargo_package,
    copy_args,
    env_pairs,
    job_env,
    mem_bytes,
    parse_containerfile,
    render_kustomization,
)

BUILD_DIR = REPO / "target" / "container-build"
HOST_TARGET = "x86_64-unknown-linux-gnu"
TEST_API_KEY = "tb-test-key-5f1c9e0a7d"  # made up for this test; must never be printed

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the host build uses x86_64-unknown-linux-gnu")


def need_root():
    if os.geteuid() != 0:
        pytest.skip("running the binary in an empty root as UID 1000740000 needs root (chroot, mknod); CI runs as root")


# --- the image --------------------------------------------------------------------


@dataclass
class Image:
    files: dict[str, Path]  # path in the image -> built file on the host
    env: dict[str, str]
    user: str
    argv: list[str]
    build_log: Path


def build_image() -> Image:
    _, stages = parse_containerfile()
    builder = next(s for s in stages if s.name == "builder")
    final = stages[-1]

    # A fresh work dir but for cargo's target/ (the cache a layer would hold).
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    for p in BUILD_DIR.iterdir():
        if p.name != "target":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    log_path = BUILD_DIR.parent / "container-build.log"

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR")
        and not k.startswith("CARGO_BUILD_")
    }
    workdir = None
    with open(log_path, "w") as log:
        for ins in builder.instructions:
            if ins.keyword == "WORKDIR":
                workdir = ins.args
            elif ins.keyword == "ENV":
                env.update(env_pairs(ins.args))
            elif ins.keyword == "COPY":
                flags, sources, dest = copy_args(ins.args)
                assert not flags, f"line {ins.line}: COPY flags are not emulated here"
                target = BUILD_DIR / dest
                for src in sources:
                    s = REPO / src
                    if s.is_dir():
                        shutil.copytree(s, target, dirs_exist_ok=True)  # keeps mtimes, as COPY does
                    else:
                        target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") else None
                        shutil.copy2(s, target / s.name if dest.endswith("/") else target)
            elif ins.keyword == "RUN":
                log.write(f"\n### line {ins.line}: RUN {ins.args}\n")
                log.flush()
                proc = subprocess.run(
                    ["sh", "-c", ins.args],
                    cwd=BUILD_DIR,
                    env={**env, "CARGO_BUILD_TARGET": HOST_TARGET},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=1800,
                )
                if proc.returncode != 0:
                    tail = log_path.read_text()[-4000:]
                    pytest.fail(f"Containerfile line {ins.line}: RUN failed ({proc.returncode}):\n{tail}")
            else:
                pytest.fail(f"Containerfile line {ins.line}: {ins.keyword} in the builder is not emulated by this test")
    assert workdir and workdir.startswith("/")

    files, img_env, user, entrypoint, cmd = {}, {}, None, [], []
    for ins in final.instructions:
        if ins.keyword == "COPY":
            flags, sources, dest = copy_args(ins.args)
            assert flags == {"from": "builder"}
            (src,) = sources
            rel = os.path.relpath(src, workdir)
            assert not rel.startswith(".."), f"line {ins.line}: copies from outside WORKDIR"
            files[dest] = BUILD_DIR / rel
        elif ins.keyword == "ENV":
            img_env.update(env_pairs(ins.args))
        elif ins.keyword == "USER":
            user = ins.args
        elif ins.keyword == "ENTRYPOINT":
            entrypoint = json.loads(ins.args)
        elif ins.keyword == "CMD":
            cmd = json.loads(ins.args)
    return Image(files, img_env, user, entrypoint + cmd, log_path)


@pytest.fixture(scope="module")
def image() -> Image:
    if not shutil.which("cargo"):
        pytest.skip("cargo is not installed")
    return build_image()


@pytest.fixture(scope="module")
def binary(image) -> Path:
    return image.files["/turnbench"]


# --- the binary -------------------------------------------------------------------


def test_binary_is_static(binary):
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True)
    assert re.search(r"statically linked|not a dynamic executable", ldd.stdout + ldd.stderr), ldd
    dynamic = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    assert "NEEDED" not in dynamic
    headers = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in headers, "a program interpreter (ld.so) is requested"


def test_binary_is_turnbench_not_the_placeholder(binary):
    """The dependency layer builds a placeholder `fn main() {}`; the image must hold the
    real program, rebuilt from src/."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"turnbench {cargo_package()['version']}"


def test_binary_is_stripped_and_its_size_is_documented(binary):
    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections
    size = binary.stat().st_size
    m = re.search(r"Stripped static binary: \*\*[\d.]+ MB\*\* \(([\d,]+) bytes", README.read_text())
    assert m, "job-templates/README.md states the stripped binary size"
    documented = int(m[1].replace(",", ""))
    # Within a quarter: past that, update the README (the command is next to the figure).
    assert abs(size - documented) <= documented / 4, f"measured {size:,} bytes, README says {documented:,}"


def test_tls_roots_are_compiled_in(binary):
    """webpki-roots: the public CAs' subjects are in the binary, so no CA bundle is needed."""
    data = binary.read_bytes()
    for name in (b"ISRG Root X1", b"DigiCert Global Root G2", b"Amazon Root CA 1", b"GlobalSign"):
        assert name in data, name


# --- a root with nothing but the image --------------------------------------------


def make_root(tmp_path: Path, image: Image, volumes: list[str], files: dict[str, bytes] | None = None) -> Path:
    root = tmp_path / "root"
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    for dest, src in image.files.items():
        p = root / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, p)
        os.chown(p, 0, 0)
    # What a container runtime provides: /dev/null, /dev/urandom, /tmp.
    (root / "dev").mkdir()
    for name, minor in (("null", 3), ("urandom", 9)):
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.chmod(root / "dev" / name, 0o666)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    # emptyDir volumes: world-writable directories.
    for mount in volumes:
        d = root / mount.lstrip("/")
        d.mkdir(parents=True)
        os.chmod(d, 0o777)
    for path, content in (files or {}).items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        os.chmod(p, 0o644)
    return root


def tree(root: Path) -> set[str]:
    return {"/" + str(p.relative_to(root)) for p in root.rglob("*")}


@dataclass
class Run:
    rc: int
    log: str  # stdout and stderr interleaved, as `oc logs` shows them
    max_rss_bytes: int


def run_as_openshift_user(
    root: Path, argv: list[str], env: dict[str, str], timeout: float = 180, sigterm_after: float | None = None
) -> Run:
    """argv in `root` as UID 1000740000, GID 0, no supplementary groups, no capabilities
    (dropped by the change of UID), no_new_privs (allowPrivilegeEscalation: false).
    `sigterm_after`: seconds after the run logs its start, SIGTERM, as the kubelet at
    the pod's deadline."""
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
    setpriv = shutil.which("setpriv", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert chroot and setpriv, "coreutils chroot and util-linux setpriv"
    cmd = [setpriv, "--no-new-privs", chroot, f"--userspec={OPENSHIFT_UID}:{OPENSHIFT_GID}", "--groups=0", str(root), *argv]
    log_path = root.parent / "pod.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        signal_at = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if sigterm_after is not None and signal_at is None and " starting " in log_path.read_text(errors="replace"):
                signal_at = time.monotonic() + sigterm_after
            if signal_at is not None and time.monotonic() >= signal_at:
                proc.send_signal(signal.SIGTERM)  # setpriv and chroot exec'd: this is turnbench
                signal_at = float("inf")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"timed out after {timeout}s:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, log_path.read_text(errors="replace"), usage.ru_maxrss * 1024)


def readme_cut_command() -> str:
    """The README's one command that cuts the user-info block out of `oc logs`."""
    m = re.search(r"^\s*oc logs job/turnbench (\| .+)$", README.read_text(), re.M)
    assert m, "README.md: a line `oc logs job/turnbench | ...` that cuts the user-info block"
    return m[1]


def cut_user_info(log: str, tmp_path: Path) -> dict:
    logfile = tmp_path / "oc-logs.txt"
    logfile.write_text(log)
    out = subprocess.run(
        ["sh", "-c", f'cat "$1" {readme_cut_command()}', "sh", str(logfile)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("# BEGIN TURNBENCH USER INFO\n") and out.endswith("# END TURNBENCH USER INFO\n"), out
    return yaml.safe_load(out)["agnosticd_user_info"]


def job_parts(kustomization_dir: Path, name: str) -> tuple[dict, dict[str, str], str, int]:
    """The Job's container, its environment, its emptyDir mount path and memory request."""
    (job,) = [d for d in render_kustomization(kustomization_dir) if d["kind"] == "Job" and d["metadata"]["name"] == name]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = job_env(kustomization_dir, name)
    (mount,) = container["volumeMounts"]
    assert "command" not in container and "args" not in container, "the Job relies on the image's ENTRYPOINT and CMD"
    return container, env, mount["mountPath"], int(mem_bytes(container["resources"]["requests"]["memory"]))


def check_clean_run(run: Run, root: Path, before: set[str], results_dir: str, memory_request: int):
    assert "unknown environment variable" not in run.log, run.log
    assert "\x1b[" not in run.log, "ANSI escapes in the log (the image sets NO_COLOR=1)"
    assert TEST_API_KEY not in run.log
    # Nothing written anywhere but the results volume, and that as the OpenShift UID.
    written = tree(root) - before
    files = ("results.json", "requests.csv", "report.html")
    assert written == {f"{results_dir}/{name}" for name in files}, written
    for name in files:
        st = (root / results_dir.lstrip("/") / name).stat()
        assert (st.st_uid, st.st_gid) == (OPENSHIFT_UID, OPENSHIFT_GID)
    for name in files:
        assert TEST_API_KEY not in (root / results_dir.lstrip("/") / name).read_text()
    # The Job's memory request is not below what a run takes.
    assert run.max_rss_bytes < memory_request, f"peak RSS {run.max_rss_bytes:,} B vs request {memory_request:,} B"


def test_smoke_test_job_runs_in_an_empty_root(image, tmp_path):
    """The smoke-test Job exactly as written: no URL, so the built-in simulator."""
    need_root()
    _, env, results, mem_request = job_parts(JOB_DIR / "smoke-test", "turnbench-smoke-test")
    root = make_root(tmp_path, image, [results])
    before = tree(root)
    run = run_as_openshift_user(root, image.argv, {**image.env, **env})
    assert run.rc == 0, run.log
    assert "BUILT-IN SIMULATOR" in run.log
    info = cut_user_info(run.log, tmp_path)
    data = info["data"]
    # --strict: exit 0 means PASS or WARN (WARN only on a machine too busy for 500 ms).
    assert data["litemaas_benchmark_status"].startswith(("PASS", "WARN"))
    assert data["litemaas_benchmark_model"] == "turnbench-sim"
    assert data["litemaas_benchmark_seed"] == env["TURNBENCH_SEED"]
    assert int(data["litemaas_benchmark_total_requests"]) == int(env["TURNBENCH_CONVERSATIONS"]) * int(env["TURNBENCH_TURNS"])
    assert data["litemaas_benchmark_failed_requests"] == "0"
    check_clean_run(run, root, before, results, mem_request)


# --- the benchmark Job against a "Service" on loopback ----------------------------


@pytest.fixture(scope="module")
def simulator():
    """`turnbench sim` (the regular build) on 127.0.0.1, requiring TEST_API_KEY."""
    exe = os.environ.get("TURNBENCH_BIN", str(REPO / "target/release/turnbench"))
    if not Path(exe).is_file():
        pytest.skip(f"no turnbench binary at {exe}: run scripts/test.sh, or set TURNBENCH_BIN")
    proc = subprocess.Popen(
        [exe, "sim", "--host", "127.0.0.1", "--port", "0", "--api-key", TEST_API_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert m, f"simulator said {line!r}"
        yield int(m[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class FakeClusterDNS:
    """A DNS server on a loopback address that knows one fully qualified name, as the
    cluster DNS knows a Service: A queries get 127.0.0.1, AAAA no data, others NXDOMAIN."""

    def __init__(self, address: str, name: str):
        self.name = name.lower().rstrip(".")
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((address, 53))
        except OSError as e:
            self.sock.close()
            pytest.skip(f"cannot serve DNS on {address}:53 ({e})")
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(1500)
            except TimeoutError:
                continue
            try:
                self.sock.sendto(self.answer(data), peer)
            except (IndexError, struct.error):
                continue

    def answer(self, data: bytes) -> bytes:
        qid, flags = struct.unpack(">HH", data[:4])
        i, labels = 12, []
        while data[i]:
            labels.append(data[i + 1 : i + 1 + data[i]].decode("ascii"))
            i += 1 + data[i]
        qtype = struct.unpack(">H", data[i + 1 : i + 3])[0]
        question = data[12 : i + 5]
        name = ".".join(labels).lower()
        self.queries.append(name)
        answers = b""
        if name != self.name:
            rcode = 3
        else:
            rcode = 0
            if qtype == 1:
                answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
        hdr = struct.pack(">HHHHHH", qid, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, 1 if answers else 0, 0, 0)
        return hdr + question + answers

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def fast(env: dict[str, str]) -> dict[str, str]:
    """The same settings with a workload of a few seconds."""
    return {
        **env,
        "TURNBENCH_CONVERSATIONS": "3",
        "TURNBENCH_TURNS": "3",
        "TURNBENCH_MIN_DELAY": "0.01",
        "TURNBENCH_MAX_DELAY": "0.05",
        "TURNBENCH_WARMUP": "1",
    }


def test_sigterm_at_the_pod_deadline_leaves_a_partial_report(image, simulator, tmp_path):
    """The kubelet's SIGTERM at the pod's activeDeadlineSeconds, in the middle of the
    benchmark Job's full default workload: exit 143 within the grace period, with the
    report of what was measured in the log."""
    need_root()
    _, env, results, mem_request = job_parts(JOB_DIR, "turnbench")
    env.pop("TURNBENCH_API_KEY")
    env |= {"TURNBENCH_URL": f"http://127.0.0.1:{simulator}/v1", "TURNBENCH_API_KEY": TEST_API_KEY}
    (job,) = [d for d in render_kustomization(JOB_DIR) if d["kind"] == "Job"]
    grace = job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    root = make_root(tmp_path, image, [results])
    before = tree(root)
    started = time.monotonic()
    run = run_as_openshift_user(root, image.argv, {**image.env, **env}, timeout=60, sigterm_after=6)
    assert run.rc == 143, run.log
    assert time.monotonic() - started < 6 + grace
    assert "PARTIAL RESULTS" in run.log
    data = cut_user_info(run.log, tmp_path)["data"]
    total = int(env["TURNBENCH_CONVERSATIONS"]) * int(env["TURNBENCH_TURNS"])
    assert 0 < int(data["litemaas_benchmark_total_requests"]) < total
    check_clean_run(run, root, before, results, mem_request)


def test_benchmark_job_reaches_a_service_by_its_short_name(image, simulator, tmp_path):
    """The benchmark Job's ConfigMap and Secret, its URL pointed at a Service name that
    only the cluster DNS (through the kubelet's resolv.conf search list) resolves."""
    need_root()
    _, env, results, mem_request = job_parts(JOB_DIR, "turnbench")
    assert env.pop("TURNBENCH_API_KEY").startswith("<secret:")
    dns_ip = "127.0.0.153"
    dns = FakeClusterDNS(dns_ip, "llm.bench.svc.cluster.local")
    try:
        root = make_root(
            tmp_path,
            image,
            [results],
            {
                # What the kubelet mounts into every container.
                "/etc/resolv.conf": (
                    f"search bench.svc.cluster.local svc.cluster.local cluster.local\n"
                    f"nameserver {dns_ip}\noptions ndots:5\n"
                ).encode(),
                "/etc/hosts": b"# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n",
                "/etc/hostname": b"turnbench-abcde\n",
            },
        )
        before = tree(root)
        env = fast(env) | {"TURNBENCH_URL": f"http://llm:{simulator}/v1", "TURNBENCH_API_KEY": TEST_API_KEY}
        run = run_as_openshift_user(root, image.argv, {**image.env, **env})
    finally:
        dns.close()
    assert run.rc == 0, run.log
    assert "llm.bench.svc.cluster.local" in dns.queries, dns.queries
    data = cut_user_info(run.log, tmp_path)["data"]
    assert data["litemaas_benchmark_total_requests"] == "9"
    assert data["litemaas_benchmark_failed_requests"] == "0"
    assert data["litemaas_benchmark_model"] == "turnbench-sim"
    check_clean_run(run, root, before, results, mem_request)


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_endpoint(simulator, tmp_path_factory):
    """HTTPS on 127.0.0.1 in front of the simulator, with a certificate from a private
    CA (as an OpenShift service CA or a company CA would be). Yields (port, CA PEM)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=turnbench test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    openssl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "srv.pem", d / "srv.key")

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def pipe(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", simulator)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw), return_exceptions=True)

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        state["server"] = server
        state["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    def main():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state["port"], (d / "ca.pem").read_bytes()
    def stop():
        state["server"].close()
        for task in asyncio.all_tasks():
            task.cancel()

    loop.call_soon_threadsafe(stop)
    thread.join(timeout=5)


def test_tls_works_in_an_empty_root_and_verifies(image, tls_endpoint, tmp_path):
    """No CA bundle in the root: a private CA given with TURNBENCH_CA_CERT is trusted;
    without it the same server is refused (verification is on, with the compiled-in
    public roots only), and the run says why and exits 3."""
    need_root()
    port, ca_pem = tls_endpoint
    _, env, results, mem_request = job_parts(JOB_DIR, "turnbench")
    env.pop("TURNBENCH_API_KEY")
    env = fast(env) | {"TURNBENCH_URL": f"https://127.0.0.1:{port}/v1", "TURNBENCH_API_KEY": TEST_API_KEY}

    root = make_root(tmp_path / "with-ca", image, [results, "/etc/turnbench/ca"])
    os.chmod(root / "etc/turnbench/ca", 0o755)
    (root / "etc/turnbench/ca/ca.crt").write_bytes(ca_pem)
    before = tree(root)
    ok = run_as_openshift_user(root, image.argv, {**image.env, **env, "TURNBENCH_CA_CERT": "/etc/turnbench/ca/ca.crt"})
    assert ok.rc == 0, ok.log
    assert cut_user_info(ok.log, tmp_path)["data"]["litemaas_benchmark_failed_requests"] == "0"
    check_clean_run(ok, root, before, results, mem_request)

    root = make_root(tmp_path / "without-ca", image, [results])
    refused = run_as_openshift_user(root, image.argv, {**image.env, **env})
    assert refused.rc == 3, refused.log
    assert "UnknownIssuer" in refused.log
    assert TEST_API_KEY not in refused.log
