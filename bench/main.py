"""Run the benchmark: start upstream, peer and mirror; measure; report."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tests.support.load import raise_open_files

from . import (
    cache_report,
    chart,
    data_plane_report,
    profile,
    report,
    s3_report,
    s3_scenarios,
    scenarios,
)
from .plan import FULL, QUICK, Plan
from .stack import Stack

FD_MARGIN = 500  # open files beyond the idle connections: curl's, logs, upstream sockets

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="./run.sh bench",
        description="Benchmark regmirror beside direct pulls from the upstream and "
        "distribution's pull-through proxy (all on 127.0.0.1).",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (tests)")
    p.add_argument("--reps", type=int, help="repetitions of each curl measurement")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    p.add_argument("--chart", type=Path, help="also write the chart here (e.g. docs/bench.png)")
    p.add_argument(
        "--mirror-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra mitmdump option for the mirror (repeatable), e.g. regmirror_read_size=65535",
    )
    p.add_argument(
        "--native", action="store_true", help="with --profile: C frames too (py-spy --native)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the work folder (logs of every process)"
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const=",".join(profile.LOADS),
        metavar="NAME,...",
        help="instead of measuring, profile the serving mirror process with py-spy under some "
        f"loads ({', '.join(profile.LOADS)}; default all); writes folded stacks and summaries "
        "to the results folder",
    )
    p.add_argument(
        "--only",
        choices=("s3",),
        help="run one section alone: s3, the S3 cache and replicas behind haproxy (issue 13)",
    )
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            res = subprocess.run(args, capture_output=True, text=True, timeout=10)
        except OSError:
            return ""
        return (
            (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr) else ""
        )

    mem = ""
    cpu = ""
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        mem = f"{mem_kb / 1024 / 1024:.1f} GiB"
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "python": platform.python_version(),
        "mitmproxy": run(str(Path(sys.executable).parent / "mitmdump"), "--version"),
        "distribution": run("/usr/bin/docker-registry", "--version"),
        "skopeo": run("skopeo", "--version"),
        "curl": run("curl", "--version"),
    }


def _mirror_options(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--mirror-set {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan: Plan = QUICK if args.quick else FULL
    if args.reps:
        plan = replace(plan, reps=args.reps)
    options = _mirror_options(args.mirror_set)
    started = time.monotonic()
    # the machine's 1, 5 and 15 minute load averages: at start, after each section, at end
    load = {"start": os.getloadavg()}
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="regmirror-bench-"))
    logger.info("work folder %s", work)
    timings: dict[str, float] = {}
    raw: dict[str, Any] = {}
    try:
        raise_open_files(plan.idle_connections + FD_MARGIN)  # the servers inherit it
        stack = Stack.start(work / "stack", options, plan.redirect_min)
        try:
            t = time.monotonic()
            data = scenarios.setup(stack, plan, work / "setup")
            timings["setup"] = time.monotonic() - t
            logger.info("pushed test data in %.1f s", timings["setup"])
            token = stack.pull_token(data.repos())
            if args.profile:
                out = args.out / f"profile-{stamp}"
                return _profile(stack, data, plan, token, out, args.profile, args.native)
            sections: dict[str, Callable[[], Any]] = {
                "blob_curl": lambda: scenarios.blob_curl(stack, data, plan, token),
                "blob_skopeo": lambda: scenarios.blob_skopeo(stack, data, plan, work / "skopeo"),
                "small_requests": lambda: scenarios.small_requests(stack, data, plan, token),
                "cold_pulls": lambda: scenarios.cold_pulls(stack, data, work / "pulls"),
                "concurrency": lambda: scenarios.concurrency(
                    stack, data, plan, token, work / "conc"
                ),
                "single_flight": lambda: scenarios.single_flight(
                    stack, data, plan, token, work / "flight"
                ),
                "idle_connections": lambda: scenarios.idle_connections(
                    stack, data, plan, token, work / "idle"
                ),
                "s3": lambda: s3_scenarios.run(stack, data, plan, token, work / "s3"),
            }
            if args.only:
                sections = {args.only: sections[args.only]}
            for name, run in sections.items():
                t = time.monotonic()
                raw[name] = run()
                timings[name] = time.monotonic() - t
                load[name] = os.getloadavg()
                logger.info("%s done in %.1f s", name, timings[name])
        finally:
            stack.stop()
            load["end"] = os.getloadavg()
    finally:
        if args.keep:
            logger.info("kept %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    meta = {
        "date": stamp,
        "command": "./run.sh bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "mirror_options": options,
        "machine": machine(),
        "load": load,
        "seconds": {**timings, "total": time.monotonic() - started},
    }
    if args.only:
        return s3_report.write_alone(args.out, meta, raw, plan)
    rows, targets, scaling = report.summarize(raw, plan)
    cache_rows = cache_report.summarize(raw, plan)
    cache_targets = cache_report.targets(raw, plan)
    requests = cache_report.request_table(raw)
    dp_rows = data_plane_report.summarize(raw, plan)
    dp_targets = data_plane_report.targets(raw, plan)
    cache = {
        "summary": [
            {**asdict(r), "ratios": {f"{a}/{b}": r.ratio(a, b) for a, b in cache_report.RATIOS}}
            for r in cache_rows
        ],
        "requests": requests,
        "targets": [asdict(t) for t in cache_targets],
        "data_plane": {
            "summary": [
                {
                    **asdict(r),
                    "ratios": {f"{a}/{b}": r.ratio(a, b) for a, b in data_plane_report.RATIOS},
                }
                for r in dp_rows
            ],
            "targets": [asdict(t) for t in dp_targets],
        },
        "s3": s3_report.summary(raw, plan),
    }
    table = "\n".join(
        [
            report.markdown(rows, targets),
            "Pull-through cache (issue 10):\n",
            cache_report.markdown(cache_rows, requests),
            report.target_table(cache_targets),
            "Blob data plane (issue 11):\n",
            data_plane_report.markdown(dp_rows),
            report.target_table(dp_targets),
            "S3 cache and replicas (issue 13):\n",
            s3_report.markdown(raw, plan),
        ]
    )
    json_path = args.out / f"bench-{stamp}.json"
    report.write_json(json_path, meta, raw, rows, targets, scaling, cache)
    shutil.copyfile(json_path, args.out / "latest.json")
    (args.out / "latest.md").write_text(table)
    title = (
        f"regmirror benchmark {stamp} ({meta['mode']}): {meta['machine']['nproc']} cores, "
        f"{meta['machine']['memory']}, kernel {meta['machine']['kernel']}, loopback"
    )
    png = args.out / f"bench-{stamp}.png"
    chart.draw(png, raw, plan, [*targets, *cache_targets, *dp_targets], title)
    if args.chart:
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, args.chart)
    print(table)
    print(f"results: {json_path}\nchart:   {args.chart or png}")
    print(f"total:   {meta['seconds']['total']:.0f} s")
    return 0


def _profile(
    stack: Stack,
    data: scenarios.Data,
    plan: Plan,
    token: str,
    out: Path,
    names: str,
    native: bool = False,
) -> int:
    """py-spy of the mirror process under each load of `names` (profile.LOADS)."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if unknown := set(wanted) - set(profile.LOADS):
        raise SystemExit(f"--profile: unknown {sorted(unknown)}; choose from {profile.LOADS}")
    texts = []
    for name in wanted:
        pid, load = profile.LOADS[name](stack, data, plan, token)
        folded = profile.record(pid, out / f"{name}.folded", load, native=native)
        text = profile.summarize(folded)
        (out / f"{name}.txt").write_text(text)
        texts.append(f"== {name}\n{text}")
    print("\n".join(texts))
    print(f"profiles: {out}")
    return 0
