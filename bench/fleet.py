"""Provisioning fleet benchmark: N simulated boxes enrol and check in over loopback TLS.

    .venv/bin/python bench/fleet.py --devices 5000 --db sqlite
    .venv/bin/python bench/fleet.py --devices 5000 --db postgresql   # needs Debian postgresql

The service runs as its own process (``serve()``, one uvicorn worker), as in production;
the boxes are asyncio tasks in this process, each with its own key and certificate. Every
request opens a new TLS connection, as a box checking in once a minute would. Phases:

1. enrol: all boxes pre-registered by CSV (path A), then enrol ``--concurrency`` at a time;
   enrolments/s = boxes / wall time.
2. check-in: open loop at ``--rate`` check-ins/s (default: what the fleet makes at the 60 s
   check-in interval, 83/s for 5,000 boxes) for ``--checkins`` requests (default: one per
   box); latency p50/p95/p99 from send to parsed answer.

Box key generation happens before the clock starts: it is the boxes' work, not the service's.
The service's own CPU time per request (from /proc) is printed too: on a machine shared with
other work, latency says as much about the neighbours as about us; CPU per request does not.
"""
from __future__ import annotations

import os
import sys

# Replace (not just precede) this script's folder on the path, before anything else is
# imported: bench/array.py would shadow the standard library's ``array`` (socket imports it).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402  (imports after the path fix above, on purpose)
import asyncio  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

from provisioning import crypto, protocol  # noqa: E402
from provisioning.service.keys import ServiceKeys, init_service  # noqa: E402

START_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throwaway cluster in a temp dir, run as the postgres user when we are root."""

    def __init__(self):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
        if not bins:
            raise SystemExit("fleet: PostgreSQL not installed (apt-get install postgresql)")
        self.bin = bins[0].parent
        self.root = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def __enter__(self) -> str:
        data = self.root / "data"
        subprocess.run(self.as_user + [str(self.bin / "initdb"), "-D", str(data), "-U",
                                       "postgres", "--auth=trust", "--no-sync"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S)
        subprocess.run(self.as_user + [str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-l",
                                       str(self.root / "log"), "-o",
                                       f"-p {self.port} -k {self.root} "
                                       "-c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def __exit__(self, *exc):
        subprocess.run(self.as_user + [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"),
                                       "-m", "fast", "stop"], capture_output=True,
                       timeout=START_TIMEOUT_S)
        shutil.rmtree(self.root, ignore_errors=True)


class Service:
    def __init__(self, data: Path, database_url: str):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        code = ("import logging, sys; logging.basicConfig(level=logging.WARNING);"
                "from provisioning.service.keys import ServiceKeys;"
                "from provisioning.service.server import serve;"
                f"serve(ServiceKeys.load({str(data)!r}), '127.0.0.1:{self.port}', "
                f"{database_url!r})")
        self.proc = subprocess.Popen([sys.executable, "-c", code])

    async def wait_ready(self, ctx: ssl.SSLContext) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(verify=ctx, timeout=2) as client:
            while True:
                try:
                    await client.get(self.url + protocol.CA_PATH)
                    return
                except httpx.TransportError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("fleet: service did not start")
                    await asyncio.sleep(0.2)

    def cpu_s(self) -> float:
        """CPU seconds the service process has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(START_TIMEOUT_S)


class SimBox:
    def __init__(self, serial: str, ca_path: Path, folder: Path):
        self.serial = serial
        self.key = crypto.new_tls_key()
        self.csr = crypto.make_csr(self.key, serial).decode()
        self.folder = folder
        self.ca_path = ca_path
        self.ctx: ssl.SSLContext | None = None

    def take_certificate(self, pem: str) -> None:
        cert, key = self.folder / f"{self.serial}.pem", self.folder / f"{self.serial}.key"
        cert.write_text(pem)
        key.write_bytes(crypto.key_pem(self.key))
        self.ctx = ssl.create_default_context(cafile=str(self.ca_path))
        self.ctx.load_cert_chain(str(cert), str(key))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def enrol_all(url: str, boxes: list[SimBox], ctx: ssl.SSLContext, concurrency: int):
    errors: list[str] = []
    queue = list(boxes)

    async def worker():
        while queue:
            box = queue.pop()
            try:
                async with httpx.AsyncClient(verify=ctx, timeout=REQUEST_TIMEOUT_S) as client:
                    resp = await client.post(url + protocol.ENROL_PATH,
                                             json={"serial": box.serial, "csr": box.csr})
                if resp.status_code != 200:
                    errors.append(f"{box.serial}: HTTP {resp.status_code} {resp.text[:100]}")
                    continue
                box.take_certificate(resp.json()["certificate"])
            except httpx.HTTPError as exc:
                errors.append(f"{box.serial}: {exc!r}")

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    return time.perf_counter() - started, errors


async def checkin_load(url: str, boxes: list[SimBox], rate: float, count: int):
    latencies: list[float] = []
    errors: list[str] = []
    enrolled = [b for b in boxes if b.ctx]

    async def one(box: SimBox):
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(verify=box.ctx, timeout=REQUEST_TIMEOUT_S) as client:
                resp = await client.post(url + protocol.CHECKIN_PATH, json={
                    "health": {"camera": "ok", "speaker": "ok", "uptime_s": 1234},
                    "config_version": 1, "config_status": {"committed": 1}})
            body = resp.json()
            if resp.status_code != 200 or "desired_config_version" not in body:
                errors.append(f"{box.serial}: HTTP {resp.status_code}")
                return
            latencies.append(time.perf_counter() - started)
        except httpx.HTTPError as exc:
            errors.append(f"{box.serial}: {exc!r}")

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for i in range(count):
            # Open loop: requests leave on schedule whether or not earlier ones finished.
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tg.create_task(one(enrolled[i % len(enrolled)]))
    return time.perf_counter() - started, latencies, errors


async def run_one(db: str, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="fleet-"))
    pg = Postgres() if db == "postgresql" else None
    try:
        database_url = pg.__enter__() if pg else f"sqlite:///{work / 'fleet.db'}"
        token = init_service(work / "svc", database_url=database_url)
        keys = ServiceKeys.load(work / "svc")
        ctx = ssl.create_default_context(cafile=str(keys.ca_cert_path))
        (work / "boxes").mkdir()
        boxes = [SimBox(f"FLEET-{i:06d}", keys.ca_cert_path, work / "boxes")
                 for i in range(args.devices)]
        service = Service(work / "svc", database_url)
        try:
            await service.wait_ready(ctx)
            async with httpx.AsyncClient(verify=ctx, timeout=300) as client:
                resp = await client.post(service.url + "/v1/admin/devices/import",
                                         headers={"Authorization": f"Bearer {token}"},
                                         json={"rows": [{"serial": b.serial, "room": b.serial,
                                                         "meeting_url": "whip+https://meet.example.org/r"}
                                                        for b in boxes]})
                resp.raise_for_status()
            cpu0 = service.cpu_s()
            enrol_s, enrol_errors = await enrol_all(service.url, boxes, ctx, args.concurrency)
            cpu1 = service.cpu_s()
            count = args.checkins or args.devices
            checkin_s, latencies, checkin_errors = await checkin_load(
                service.url, boxes, args.rate, count)
            cpu2 = service.cpu_s()
        finally:
            service.stop()
    finally:
        if pg:
            pg.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)
    for err in (enrol_errors + checkin_errors)[:5]:
        print(f"  error: {err}", file=sys.stderr)
    return {"db": db, "devices": args.devices, "enrol_per_s": args.devices / enrol_s,
            "enrol_errors": len(enrol_errors), "checkins": len(latencies),
            "checkin_rate": count / checkin_s,
            "p50_ms": percentile(latencies, 50) * 1000 if latencies else float("nan"),
            "p95_ms": percentile(latencies, 95) * 1000 if latencies else float("nan"),
            "p99_ms": percentile(latencies, 99) * 1000 if latencies else float("nan"),
            "checkin_errors": len(checkin_errors),
            "enrol_cpu_ms": (cpu1 - cpu0) * 1000 / args.devices,
            "checkin_cpu_ms": (cpu2 - cpu1) * 1000 / count,
            "load": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16, help="enrolments in flight")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="check-ins per second (default: devices / 60 s, the real load)")
    parser.add_argument("--checkins", type=int, default=0, help="check-ins (default: --devices)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    args.rate = args.rate or args.devices / protocol.CHECKIN_INTERVAL_S
    results = [asyncio.run(run_one(db, args)) for db in
               (("sqlite", "postgresql") if args.db == "both" else (args.db,))]
    print(f"{'db':<11} {'devices':>7} {'enrol/s':>8} {'enrol err':>9} {'check-ins':>9} "
          f"{'rate/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'err':>4} "
          f"{'svc CPU ms/enrol':>16} {'svc CPU ms/check-in':>19} {'load':>5}")
    for r in results:
        print(f"{r['db']:<11} {r['devices']:>7} {r['enrol_per_s']:>8.1f} {r['enrol_errors']:>9} "
              f"{r['checkins']:>9} {r['checkin_rate']:>7.1f} {r['p50_ms']:>7.1f} "
              f"{r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['checkin_errors']:>4} "
              f"{r['enrol_cpu_ms']:>16.2f} {r['checkin_cpu_ms']:>19.2f} {r['load']:>5.1f}")
    return 0 if all(r["enrol_errors"] == 0 and r["checkin_errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
