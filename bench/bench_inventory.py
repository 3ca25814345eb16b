"""Bench: the AWS inventory sync vs Cloud Custodian listing the same EC2 fleet from the same moto server.

Seeds N instances (default 20,000) over 4 regions in moto (server mode, in this process), then runs, each as
the CLI a user would run, against the same endpoint (AWS_ENDPOINT_URL):

- the agent: ``veuctl inventory sync --source aws`` (lists, maps to accelerators, writes holdings into a
  fresh SQLite store),
- Cloud Custodian: ``custodian run`` with an ``aws.ec2`` policy, ``--cache-period 0``, the same 4 regions.

Prints both wall times, the ratio (agent / custodian; <= 1.0 means no slower) and the agent's peak RSS.
Both listings are checked to contain all N instances. ``--quick`` uses 2,000 instances.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"]
ACCOUNT = "123456789012"
ROOT = Path(__file__).resolve().parent.parent


def seed(n: int, batch: int = 250) -> None:
    """Create n instances straight in moto's backend (the HTTP RunInstances path is far slower to seed)."""
    from moto.ec2.models import ec2_backends

    per = n // len(REGIONS)
    for i, region in enumerate(REGIONS):
        backend = ec2_backends[ACCOUNT][region]
        todo = per + (n - per * len(REGIONS) if i == 0 else 0)
        while todo > 0:
            k = min(batch, todo)
            backend.run_instances(
                "ami-12c6146b",
                k,
                None,
                [],
                instance_type="p5.48xlarge",
                is_instance_type_default=False,
                placement=None,
                placement_hostid=None,
                region_name=region,
                subnet_id=None,
                key_name=None,
                security_group_ids=[],
                nics=[],
                private_ip=None,
                associate_public_ip=None,
                tags={},
                ebs_optimized=False,
                disable_api_stop=False,
                instance_market_options={},
                instance_initiated_shutdown_behavior=None,
                launch_template={},
                hibernation_options={},
                iam_instance_profile_name=None,
                iam_instance_profile_arn=None,
                monitoring_state="disabled",
                ipv6_address_count=None,
                metadata_options={},
                client_token="ABCDE",
            )
            todo -= k


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, tuple[str, str]]:
    """(wall seconds, the child's own peak RSS in KiB, (stdout, stderr)) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bufs: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda k=k, f=f: bufs.__setitem__(k, f.read()))
        for k, f in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for r in readers:
        r.start()
    _, status, ru = os.wait4(proc.pid, 0)  # reap it ourselves to get this child's rusage alone
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    if proc.returncode != 0:
        sys.stderr.write(bufs.get("out", "")[-4000:] + bufs.get("err", "")[-4000:])
        raise SystemExit(f"{cmd[0]} exited {proc.returncode}")
    return wall, ru.ru_maxrss, (bufs.get("out", ""), bufs.get("err", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 instances instead of 20,000")
    ap.add_argument("-n", type=int, default=None, help="instances (overrides --quick)")
    args = ap.parse_args()
    n = args.n or (2000 if args.quick else 20000)

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    t0 = time.perf_counter()
    seed(n)
    print(f"seeded {n} instances over {len(REGIONS)} regions in moto in {time.perf_counter() - t0:.1f}s")

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "VEU_DATABASE_URL": f"sqlite:///{t / 'veu.db'}",
            "HOME": str(t),
        }
        env.pop("AWS_PROFILE", None)
        cfg = t / "agent.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "collectors": {
                        "aws": {
                            "max_workers": 4,
                            "capacity_reservations": False,  # c7n lists instances only; compare like with like
                            "read_timeout": 1800,  # moto renders a 5,000-instance page slowly
                            "accounts": [{"regions": REGIONS}],
                        }
                    }
                }
            )
        )
        # Migrate the store first so schema creation is not billed to the sync.
        subprocess.run([sys.executable, "-m", "agent", "db", "upgrade"], env=env, cwd=ROOT, capture_output=True)

        policy = t / "policy.yml"
        policy.write_text(yaml.safe_dump({"policies": [{"name": "ec2-all", "resource": "aws.ec2"}]}))
        custodian = str(Path(sys.executable).parent / "custodian")
        c_cmd = [custodian, "run", "-s", str(t / "c7n-out"), "--cache-period", "0"]
        for r in REGIONS:
            c_cmd += ["-r", r]
        c_wall, _, _ = timed([*c_cmd, str(policy)], env, ROOT)
        c_count = 0
        for f in (t / "c7n-out").rglob("resources.json"):
            c_count += len(json.loads(f.read_text()))

        a_wall, a_rss, (out, _) = timed(
            [sys.executable, "-m", "agent", "inventory", "sync", "--source", "aws", "--config", str(cfg), "--json"],
            env,
            ROOT,
        )
        run = json.loads(out)["runs"][0]
    server.stop()

    if run["observed"] != n or c_count != n:
        raise SystemExit(
            f"listings differ from the seeded fleet: agent {run['observed']}, custodian {c_count}, seeded {n}"
        )
    rss = f"{a_rss / 1024:.0f} MiB (max RSS of the veuctl process)"
    print(f"instances: {n} over {len(REGIONS)} regions (moto server mode, same endpoint for both)")
    print(
        f"veu-governor inventory sync: {a_wall:8.2f} s  "
        f"(listed, mapped to accelerators, {run['added']} holdings written)"
    )
    print(f"Cloud Custodian aws.ec2:     {c_wall:8.2f} s  (listed {c_count}, cache off)")
    print(f"ratio agent/custodian:       {a_wall / c_wall:8.2f}  ({'no slower' if a_wall <= c_wall else 'SLOWER'})")
    print(f"agent peak RSS:              {rss}")


if __name__ == "__main__":
    main()
