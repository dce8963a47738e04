"""The project against the raw loop, per one-frame job (issue 20's fair comparison): one job's round trips,
found in the emulator's trace, and the two runs' figures side by side."""

from __future__ import annotations

import os
import statistics
from collections import Counter

from jobs.devstack.latency import parse_latency

# A job's calls in a window of the trace leave out what is not the job's: long polls that delivered nothing and
# the workers' heartbeat items (the WORKERS partition), which run on their own clocks.
TAIL = 0.3  # seconds after a job is seen done in which its message's delete still belongs to it
# Over this share busy (the emulator of its one core, or all processes of the machine's cores), a run is bound by
# CPU, not by the injected round trips, and the throughput ratio compares the two sides' CPU per job.
HEADROOM = 0.7


def job_calls(trace: list[dict], start: float, done: float) -> list[dict]:
    """The requests one job caused on an otherwise idle farm: those served between its submit and `TAIL` after
    it was seen done (its acknowledgement included), ordered by when they ended."""
    calls = [
        call
        for call in trace
        if call["end"] >= start
        and call["end"] <= done + TAIL
        and call["note"] not in ("empty", "WORKERS")
        and (call["start"] >= start or call["action"] == "ReceiveMessage")  # a long poll starts before the job
    ]
    return sorted(calls, key=lambda call: call["end"])


def sequential(calls: list[dict]) -> int:
    """How many of the calls ran one after another: the most that do not overlap (earliest end first). A long
    poll that delivered counts from when the message arrived, its end, not from when it began to wait."""
    count, free = 0, float("-inf")
    for call in calls:
        begins = call["end"] if call["action"] == "ReceiveMessage" else call["start"]
        if begins >= free:
            count, free = count + 1, call["end"]
    return count


def path_summary(trace: list[dict], windows: list[tuple[float, float]]) -> tuple[float, float, Counter]:
    """Over one-at-a-time jobs: the median of their calls, the median of those one after another, and the calls
    of the job with the median count, by (service, action, the partition a DynamoDB write touched)."""
    per_job = [job_calls(trace, start, done) for start, done in windows]
    counts = [len(calls) for calls in per_job]
    middle = per_job[counts.index(sorted(counts)[len(counts) // 2])]
    return (
        statistics.median(counts),
        statistics.median(sequential(calls) for calls in per_job),
        Counter((c["service"], c["action"], c["note"] if c["service"] == "dynamodb" else "") for c in middle),
    )


def print_side_by_side(args, *, project: dict, raw: dict) -> None:
    """The project and the raw loop per one-frame job, in two columns (issue 20: where the gap comes from)."""
    jobs = args.jobs
    row = "    {:44s} {:>10s} {:>10s}"
    print(f"  project | raw loop, per job ({jobs} jobs each; latency {parse_latency(args.latency)}):")
    print(row.format("", "project", "raw loop"))
    (calls, chain, actions), (raw_calls, raw_chain, raw_actions) = project["path"], raw["path"]
    print(row.format("round trips, submit to done, one job alone", f"{calls:g}", f"{raw_calls:g}"))
    print(row.format("  of them one after another", f"{chain:g}", f"{raw_chain:g}"))
    for key in sorted(actions.keys() | raw_actions.keys()):
        print(row.format(f"    {' '.join(filter(None, key))}", str(actions[key]), str(raw_actions[key])))
    total, raw_total = sum(project["counts"].values()), sum(raw["counts"].values())
    print(row.format("AWS requests (the N jobs, idle polls too)", f"{total / jobs:.2f}", f"{raw_total / jobs:.2f}"))
    setup = {"CreateTable", "CreateQueue", "CreateBucket", "PUTBucket"}
    for key in sorted(project["counts"].keys() | raw["counts"].keys(), key=lambda k: -project["counts"][k]):
        if key[1] not in setup:
            print(
                row.format(
                    f"  {key[0]} {key[1]}", f"{project['counts'][key] / jobs:.3f}", f"{raw['counts'][key] / jobs:.3f}"
                )
            )
    print(row.format("item bytes written (table)", f"{project['bytes']:.0f}", f"{raw['bytes']:.0f}"))
    print(
        row.format(
            "client CPU, ms (API + workers | the loop)",
            f"{project['client'] / jobs * 1000:.1f}",
            f"{raw['client'] / jobs * 1000:.1f}",
        )
    )
    print(
        row.format(
            "emulator CPU, ms", f"{project['emulator'] / jobs * 1000:.1f}", f"{raw['emulator'] / jobs * 1000:.1f}"
        )
    )
    moto, raw_moto = project["moto"], raw["moto"]
    print(
        row.format(
            "  of it in moto, by call",
            f"{sum(moto.values()) / jobs * 1000:.1f}",
            f"{sum(raw_moto.values()) / jobs * 1000:.1f}",
        )
    )
    for key in sorted(moto.keys() | raw_moto.keys(), key=lambda k: -moto[k]):
        if moto[key] + raw_moto[key] >= 0.0005 * jobs:  # 0.5 ms a job or more on either side
            print(
                row.format(
                    f"    {key[0]} {key[1]}", f"{moto[key] / jobs * 1000:.1f}", f"{raw_moto[key] / jobs * 1000:.1f}"
                )
            )
    print(row.format("throughput, jobs/s", f"{project['rate']:.1f}", f"{raw['rate']:.1f}"))
    # The share of its run each side kept busy: the emulator (one process, one core at most) and the machine.
    busy = {
        side: (d["emulator"] * d["rate"] / jobs, (d["emulator"] + d["client"]) * d["rate"] / jobs)
        for side, d in (("project", project), ("raw", raw))
    }
    cores = os.cpu_count() or 1
    print(row.format("emulator busy, % of one core", *(f"{busy[side][0] * 100:.0f}" for side in busy)))
    print(row.format(f"all CPU busy, % of {cores} cores", *(f"{busy[side][1] / cores * 100:.0f}" for side in busy)))
    goal = "goal >= 0.8 at AWS-like latency, issue 20" if args.latency else "goal >= 0.85, issue 13"
    if args.latency and max(max(e, a / cores) for e, a in busy.values()) > HEADROOM:
        goal += f"; no headroom: over {HEADROOM:.0%} busy, this compares CPU per job more than round trips"
    print(f"  throughput ratio project/raw: {project['rate'] / raw['rate']:.2f} ({goal})")
    print(
        f"  client CPU ratio raw/project: {raw['client'] / project['client']:.2f} (the throughput ratio of CPU-bound "
        "clients with no emulator on their cores, as on AWS)"
    )
