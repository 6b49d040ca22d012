"""Run the real on-machine training scripts with bash, in a temporary jobs directory, against moto's S3.

`Machine` plays the EC2 instance: it runs each generated script as SSM would (a file handed to bash, as
root-or-whoever with the machine's environment), with `RUNCTL_JOBS_DIR` pointing into a temp directory,
`AWS_ENDPOINT_URL` at the moto server, fake credentials, and a PATH whose `aws` is the AWS CLI v1 installed
in the project's virtualenv. Requirements are installed offline (`PIP_NO_INDEX=1`): the test project's
requirements name a wheel shipped inside the code, so pip needs no index and any attempt to reach one fails.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.core.training import (
    CancelResult,
    JobObservation,
    JobOutcome,
    LaunchReport,
    LogTail,
    TrainingRequest,
    cancel_script,
    classify,
    launch_script,
    logs_script,
    parse_cancel,
    parse_launch,
    parse_logs,
    parse_status,
    status_script,
)
from tests.support.moto import MotoServer, aws_env

BUCKET = "runctl-training-tests"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The training script every test job runs. It reports what it saw (argv, environment, directories, process
# group) in $RUNCTL_OUTPUT/seen.json, writes two checkpoints, and then behaves as $MODE says.
TRAIN_PY = r"""
import json
import os
import signal
import sys
import time
from pathlib import Path

out = Path(os.environ["RUNCTL_OUTPUT"])
ckpt = Path(os.environ["RUNCTL_CHECKPOINT"])
data = Path(os.environ["RUNCTL_DATA"])
mode = os.environ.get("MODE", "")


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


try:
    import tinydep
    dependency = tinydep.VERSION
except ImportError:
    dependency = None

record = {
    "argv": sys.argv[1:],
    "env": {k: v for k, v in os.environ.items() if k.startswith(("RUNCTL_", "INJ_"))},
    "cwd": os.getcwd(),
    "data": listing(data),
    "checkpoints_at_start": listing(ckpt),
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "sid": os.getsid(0),
    "tinydep": dependency,
    "prefix": sys.prefix,
}
(out / "seen.json").write_text(json.dumps(record))
(out / "metrics.txt").write_text("loss=0.1\n")
(ckpt / "step-1.pt").write_bytes(b"one")
(ckpt / "step-2.pt").write_bytes(b"two")
print("training step 1")
print("training step 2")

if mode == "exit3":
    print("giving up with exit code 3")
    sys.exit(3)
if mode == "chatty":
    for number in range(600):
        print(f"chatty line {number}")
if mode in ("sleep", "ignore-term"):
    if mode == "sleep":
        def on_term(signum, frame):
            (ckpt / "final.pt").write_bytes(b"final")
            print("got SIGTERM, saved final.pt", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("waiting for a signal", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
print("training done")
"""


def find_aws() -> Path:
    """The AWS CLI from the project's virtualenv (awscli v1 honours AWS_ENDPOINT_URL), else from PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return beside
    found = shutil.which("aws")
    if found is None:
        pytest.fail("the AWS CLI is needed to run the training scripts: pip install awscli into the venv")
    return Path(found)


def build_wheel(directory: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A pure-Python wheel made by hand, so installing requirements needs neither a build nor an index."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: runctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel


def tar_gz(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


@dataclass
class Machine:
    """A stand-in EC2 instance: a jobs directory, an environment, and bash."""

    jobs_dir: Path
    scripts_dir: Path
    env: dict[str, str]
    launched: list[str] = field(default_factory=list)

    def run(self, script: str, *, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
        path = self.scripts_dir / f"script-{uuid.uuid4().hex}.sh"
        path.write_text(script)
        done = subprocess.run(
            ["bash", str(path)],
            cwd=self.scripts_dir,  # a relative path an injected command might touch lands in the temp dir
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return done.stdout

    def launch(self, request: TrainingRequest) -> LaunchReport:
        self.launched.append(request.job_id)
        report = parse_launch(self.run(launch_script(request)))
        assert report is not None
        return report

    def status(self, job_ids: Iterable[str], **options: int) -> dict[str, JobObservation]:
        return parse_status(self.run(status_script(job_ids, **options)))

    def wait_until(
        self,
        job_ids: Iterable[str],
        done: Callable[[dict[str, JobObservation]], bool],
        *,
        timeout: float = 45,
    ) -> dict[str, JobObservation]:
        """Poll the status script until `done` holds; fail (with the last answer) after `timeout` seconds."""
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            seen = self.status(ids)
            if done(seen):
                return seen
            if time.monotonic() > deadline:
                logs = {job: seen[job].log_tail if job in seen else None for job in ids}
                pytest.fail(f"jobs did not reach the expected state in {timeout}s: {seen!r}\n{logs!r}")
            time.sleep(0.1)

    def wait_finished(self, job_ids: Iterable[str], *, timeout: float = 45) -> dict[str, JobObservation]:
        """Wait for a verdict *and* for the runner to be gone: the runner writes the exit code as its last
        record and then exits, so for a moment a finished job still shows a live runner."""
        ids = list(job_ids)

        def over(seen: dict[str, JobObservation]) -> bool:
            return all(
                job in seen and classify(seen[job]) is not JobOutcome.RUNNING and not seen[job].alive
                for job in ids
            )

        return self.wait_until(ids, over, timeout=timeout)

    def cancel(self, job_id: str, grace_seconds: int) -> CancelResult | None:
        return parse_cancel(self.run(cancel_script(job_id, grace_seconds)))

    def logs(self, job_id: str, lines: int) -> LogTail | None:
        return parse_logs(self.run(logs_script(job_id, lines)))

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def fact(self, job_id: str, name: str) -> str | None:
        path = self.job_dir(job_id) / name
        return path.read_text().strip() if path.exists() else None

    def kill_leftovers(self) -> None:
        """Stop any runner or training this machine started that a failed test left running."""
        for job_id in self.launched:
            for name in ("train_pid", "pid"):
                pid = self.fact(job_id, name)
                if pid is None or not pid.isdigit() or not _runs_under(int(pid), self.jobs_dir):
                    continue
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    continue


def _runs_under(pid: int, root: Path) -> bool:
    try:
        return str(root) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(moto_server: MotoServer) -> Any:
    client = moto_server.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def make_machine(root: Path, endpoint_url: str) -> Machine:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "aws").symlink_to(find_aws())
    (bin_dir / "python3").symlink_to(sys.executable)
    home = root / "home"
    home.mkdir()
    (root / "scripts").mkdir()
    env = {
        "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "RUNCTL_JOBS_DIR": str(root / "jobs"),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **aws_env(endpoint_url),
    }
    return Machine(jobs_dir=root / "jobs", scripts_dir=root / "scripts", env=env)


@pytest.fixture
def machine(tmp_path: Path, moto_server: MotoServer, s3: Any) -> Iterator[Machine]:
    created = make_machine(tmp_path / "machine", moto_server.endpoint_url)
    yield created
    created.kill_leftovers()


def read_object(s3: Any, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def list_keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
