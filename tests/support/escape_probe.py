"""What code inside a sandbox tries, to prove the sandbox holds: run as a script or embedded in a scene file.

    python3 escape_probe.py '{"outside": "<dir>", "port": <listening TCP port on 127.0.0.1>}'

Reads its parent's and PID 1's environments, lists /proc, connects to the port and to the ECS credentials
endpoint, tries to write in `outside`, /tmp, /var/tmp, /dev/shm, /etc and its directory's parent, lists
`outside`, and prints one line `HOSTILE_REPORT <json>` with what it got. Standard library only (it runs in
Blender too). The files it tries are named after `outside` (unique to a test), so tests running at once (or a
file an earlier run left) cannot pass or fail one another.
"""

import hashlib
import json
import os
import socket
import sys

PLACES = ("{outside}", "/tmp", "/var/tmp", "/dev/shm", "/etc", "..")


def targets(outside):
    """The paths the probe tries to write, for a probe aimed at `outside`."""
    name = "escaped-" + hashlib.sha256(str(outside).encode()).hexdigest()[:12]
    return [place.format(outside=outside) + "/" + name for place in PLACES]


def probe(config):
    report = {"uid": os.getuid(), "pid": os.getpid(), "ppid": os.getppid()}
    for name, path in (("parent", f"/proc/{os.getppid()}/environ"), ("init", "/proc/1/environ")):
        try:
            with open(path, "rb") as handle:
                report[name + "_environ"] = handle.read().decode(errors="replace")
        except OSError as exc:
            report[name + "_environ"] = "refused: " + type(exc).__name__
    try:
        report["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    except OSError as exc:
        report["processes"] = "refused: " + type(exc).__name__
    for name, address in (("local", ("127.0.0.1", config["port"])), ("credentials", ("169.254.170.2", 80))):
        try:
            with socket.create_connection(address, timeout=2):
                report["connect_" + name] = "connected"
        except OSError as exc:
            report["connect_" + name] = "refused: " + type(exc).__name__
    written = []
    for path in targets(config["outside"]):
        try:
            with open(path, "w") as handle:
                handle.write("escaped")
            written.append(os.path.realpath(path))
        except OSError:
            pass
    report["written"] = written
    try:
        report["outside_listing"] = os.listdir(config["outside"])
    except OSError as exc:
        report["outside_listing"] = "refused: " + type(exc).__name__
    return report


def report_line(config):
    return "HOSTILE_REPORT " + json.dumps(probe(config))


if __name__ == "__main__" and sys.argv[-1].startswith("{"):  # a script (in Blender, argv is Blender's)
    print(report_line(json.loads(sys.argv[1])), flush=True)
