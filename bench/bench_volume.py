"""A shared volume against an object store, for what hosts share (docs/deploy.md, "The shared
volume"): the hand-off that matters most, a trained version written on the training host and
loaded on the Triton host, timed both ways in one run.

Three hosts, each a network namespace on a bridge (bench/hosts.py; root only):

- **storage**: an SSH server (the volume, mounted on the other hosts with sshfs, a FUSE network
  file system: Linux's NFS client is not in this machine's kernel) and s3rver, an S3-compatible
  server that keeps its objects on disk (npm, package.json);
- **trainer**: writes the version's ONNX folder, as the export does;
- **triton**: loads it with the engine Triton's model runs (`open_engine`) and has it answer.

Each trial, in alternating order:

- **volume**: the trainer copies the folder into its mount; the Triton host opens it from its own
  mount, reading over the network as it loads;
- **object store**: the trainer uploads each file (boto3's managed transfer: multipart, 10
  threads); the Triton host downloads them to its own disk, then opens that folder;
- **local** (the floor, no sharing): the Triton host opens the folder from this machine's disk.

It prints seconds per step (median of `--trials`), the hand-off's ratio to the volume's, and the
bytes each host sent over the bridge, read from its link's counters.

    sudo .venv/bin/python bench/bench_volume.py [--model DIR] [--trials 3] [--json PATH]

`--model` is an ONNX folder (default: the demo model's, `manage.py prepare_model` under
DATA_DIR). Every host shares this machine's cores, disk and page cache, and the bridge moves
bytes at memory speed: the figures compare the protocols' costs, not a network's bandwidth.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import hosts  # noqa: E402

SSH_PORT, S3_PORT, BUCKET = 2222, 4568, "versions"
S3_KEYS = {"aws_access_key_id": "S3RVER", "aws_secret_access_key": "S3RVER"}  # s3rver's own pair
WAYS = ("volume", "object store", "local")


# --- the steps, each run on one host as `bench_volume.py --step NAME ...` ----------------------


def _s3(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}), **S3_KEYS
    )


def step_copy(source: Path, target: Path) -> dict:
    started = time.perf_counter()
    shutil.copytree(source, target)
    return {"seconds": time.perf_counter() - started}


def step_upload(source: Path, endpoint: str, prefix: str) -> dict:
    client, started = _s3(endpoint), time.perf_counter()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(source)}")
    return {"seconds": time.perf_counter() - started}


def step_download(endpoint: str, prefix: str, target: Path) -> dict:
    client, started = _s3(endpoint), time.perf_counter()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    if not listed.get("Contents"):
        raise SystemExit(f"the store holds nothing under {prefix}/")
    for item in listed["Contents"]:
        path = target / item["Key"].removeprefix(f"{prefix}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, item["Key"], str(path))
    return {"seconds": time.perf_counter() - started, "files": listed.get("KeyCount", 0)}


def step_load(folder: Path) -> dict:
    from inference.engine import SamplingParams, open_engine

    started = time.perf_counter()
    engine = open_engine(folder)
    opened = time.perf_counter() - started
    try:
        messages = [{"role": "user", "content": "Say hello."}]
        completion = engine.generate(messages=messages, params=SamplingParams(max_tokens=8, seed=0))[0]
    finally:
        engine.close()
    if completion.completion_tokens < 1:
        raise SystemExit(f"{folder} loaded but answered nothing")
    return {"seconds": opened, "answered": completion.completion_tokens}


def run_step(argv: list[str]) -> None:
    name, *rest = argv
    steps = {"copy": step_copy, "upload": step_upload, "download": step_download, "load": step_load}
    args = [Path(a) if a.startswith("/") else a for a in rest]
    print(json.dumps(steps[name](*args)))


# --- the harness --------------------------------------------------------------------------------


def _need(tool: str, hint: str) -> None:
    if not shutil.which(tool):
        raise SystemExit(f"{tool} is not installed: {hint}")


def sent_bytes(host: hosts.Host) -> int:
    """Bytes this host has sent over the bridge (its veth's end there receives them)."""
    return int(Path(f"/sys/class/net/{host.link}/statistics/rx_bytes").read_text())


class Bench:
    def __init__(self, work: Path, model: Path):
        self.work, self.model = work, model
        self.network = hosts.Network().create()
        self.storage = self.network.add("storage")
        self.trainer = self.network.add("trainer")
        self.triton = self.network.add("triton")
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "INFERENCE_THREADS": "2"}
        self.volume = work / "volume"  # the storage host's exported folder
        self.mounts = {"trainer": work / "mnt-trainer", "triton": work / "mnt-triton"}
        self.endpoint = f"http://{self.storage.address}:{S3_PORT}"

    def start(self) -> None:
        ssh = self.work / "ssh"
        ssh.mkdir()
        self.volume.mkdir()
        for key in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / key)], check=True)
        shutil.copy(ssh / "client.pub", ssh / "authorized_keys")
        config = ssh / "sshd_config"
        config.write_text(
            f"Port {SSH_PORT}\nListenAddress {self.storage.address}\nHostKey {ssh / 'host'}\n"
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPasswordAuthentication no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            f"PidFile {ssh / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.storage.run(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], env=self.env, log=self.work / "sshd.log")
        s3rver = ROOT / "node_modules" / "s3rver" / "bin" / "s3rver.js"
        argv = ["node", str(s3rver), "-d", str(self.work / "s3"), "-a", self.storage.address, "-p", str(S3_PORT)]
        self.storage.run([*argv, "--silent", "--configure-bucket", BUCKET], env=self.env, log=self.work / "s3.log")
        for name, mount in self.mounts.items():
            mount.mkdir()
            options = (
                f"IdentityFile={ssh / 'client'},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
                f"Port={SSH_PORT},Ciphers=aes128-gcm@openssh.com"
            )
            hosts.wait_for(
                lambda name=name, mount=mount, options=options: self.mount(name, mount, options),
                timeout_s=30,
                what=f"the volume mounted on {name}",
                logs=[self.work / "sshd.log"],
            )
        hosts.wait_for(self._s3_listens, timeout_s=30, what="s3rver", logs=[self.work / "s3.log"])

    def mount(self, name: str, mount: Path, options: str) -> bool:
        """sshfs on that host's network, its mount in this machine's mount namespace (`ip netns
        exec` would give it one of its own, which the steps' processes would not see)."""
        namespace = f"/var/run/netns/{self.network.hosts[name].namespace}"
        argv = ["nsenter", f"--net={namespace}", "sshfs", "-o", options]
        done = subprocess.run([*argv, f"root@{self.storage.address}:{self.volume}", str(mount)], capture_output=True)
        return done.returncode == 0 and os.path.ismount(mount)

    def _s3_listens(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.storage.address, S3_PORT), timeout=1):
            return True
        return False

    def step(self, host: hosts.Host, *args: str) -> dict:
        done = host.call([sys.executable, __file__, "--step", *args], env=self.env, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"{args[0]} on {host.name} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def trial(self, way: str, number: int) -> dict:
        before = {name: sent_bytes(host) for name, host in self.network.hosts.items()}
        label = f"v{number}"
        if way == "volume":
            write = self.step(self.trainer, "copy", str(self.model), str(self.mounts["trainer"] / label))
            fetch = {"seconds": 0.0}
            load = self.step(self.triton, "load", str(self.mounts["triton"] / label))
        elif way == "object store":
            write = self.step(self.trainer, "upload", str(self.model), self.endpoint, label)
            fetch = self.step(self.triton, "download", self.endpoint, label, str(self.work / "triton-disk" / label))
            load = self.step(self.triton, "load", str(self.work / "triton-disk" / label))
        else:
            write, fetch = {"seconds": 0.0}, {"seconds": 0.0}
            load = self.step(self.triton, "load", str(self.model))
        sent = {name: sent_bytes(host) - before[name] for name, host in self.network.hosts.items()}
        times = {"write": write["seconds"], "fetch": fetch["seconds"], "load": load["seconds"]}
        return {**times, "answered": load["answered"], "sent": sent}

    def stop(self) -> None:
        for mount in self.mounts.values():
            subprocess.run(["fusermount", "-u", "-z", str(mount)], capture_output=True)
        self.network.remove()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--step":
        run_step(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an ONNX folder (default: the demo model's under DATA_DIR)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every trial's figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_volume needs root (network namespaces and FUSE mounts)")
    _need("sshfs", "apt-get install sshfs")
    if not Path("/usr/sbin/sshd").exists():
        raise SystemExit("sshd is not installed: apt-get install openssh-server")
    _need("node", "apt-get install nodejs")
    if not (ROOT / "node_modules" / "s3rver").is_dir():
        raise SystemExit("s3rver is not installed: npm ci")
    model = args.model or Path(os.environ.get("DATA_DIR", ROOT / "data")) / "models" / "smollm2-135m-instruct" / "onnx"
    if not (model / "genai_config.json").is_file():
        raise SystemExit(f"{model} is not an ONNX model folder: run `manage.py prepare_model`, or pass --model")
    model = model.resolve()
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    work = Path(tempfile.mkdtemp(prefix="bench-volume-"))
    bench = Bench(work, model)
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    try:
        bench.start()
        for number in range(args.trials):
            order = WAYS if number % 2 == 0 else tuple(reversed(WAYS))
            for way in order:
                result = bench.trial(way, number)
                results[way].append(result)
                print(
                    f"trial {number + 1} {way}: "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in result.items() if k in ("write", "fetch", "load"))
                )
    finally:
        bench.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    report(model, size, results)
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "bytes": size, "trials": results}, indent=1))


def report(model: Path, size: int, results: dict[str, list[dict]]) -> None:
    def median(way: str, key: str) -> float:
        return statistics.median(r[key] for r in results[way])

    print(f"\n{model} ({size / 1e6:.0f} MB), median of {len(results['volume'])} trials")
    print(
        f"{'way':<14} {'write s':>8} {'fetch s':>8} {'load s':>8} {'hand-off s':>11} {'vs volume':>10}  MB sent (host)"
    )
    volume = sum(median("volume", k) for k in ("write", "fetch", "load"))
    for way in WAYS:
        write, fetch, load = (median(way, k) for k in ("write", "fetch", "load"))
        total = write + fetch + load
        sent = results[way][-1]["sent"]
        moved = ", ".join(f"{v / 1e6:.0f} ({k})" for k, v in sent.items() if v > 1e6) or "-"
        print(f"{way:<14} {write:>8.2f} {fetch:>8.2f} {load:>8.2f} {total:>11.2f} {total / volume:>9.2f}x  {moved}")


if __name__ == "__main__":
    main()
