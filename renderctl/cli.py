"""renderctl: submit render jobs, follow them, and download their frames.

Exit codes: 0 success (for `wait`: COMPLETED), 1 an error (the API's message is printed), 2 bad usage,
3 the job FAILED, 4 the job was CANCELLED, 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.text import Text

from renderctl import config as configuration
from renderctl.client import ApiError, Client
from renderctl.download import download as download_frames
from renderctl.spend import quote_line, usage_line

EXIT_ERROR, EXIT_FAILED, EXIT_CANCELLED, EXIT_INTERRUPTED = 1, 3, 4, 130
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
# Lines are never wrapped by rich (a terminal folds them itself): copied ids and piped lines stay whole.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]
JobRef = Annotated[
    str, typer.Argument(metavar="ID", help="A job id, or a unique prefix of one of your jobs (4 or more hex digits).")
]


def error_line(message: str) -> None:
    """One line on stderr, `error: ` in red on a terminal; the message is never read as markup or wrapped."""
    err.print(Text.assemble(("error: ", "red"), message), highlight=False)


def friendly(command):
    """Any error becomes one line on stderr and an exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            detail = ""
            if exc.code == "invalid" and isinstance(exc.details, dict):
                detail = "; ".join(
                    f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in exc.details.items()
                )
            error_line(exc.message + (f" ({detail})" if detail and detail not in exc.message else ""))
            raise typer.Exit(EXIT_ERROR) from None
        except (configuration.ConfigError, OSError) as exc:
            error_line(str(exc))
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def client() -> Client:
    cfg = configuration.load()
    return Client(cfg.url, cfg.key)


def show_json(data) -> None:
    out.print_json(json.dumps(data, default=str))


def eta(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def summary_line(job: dict) -> str:
    p = job["progress"]
    line = f"{job['id']}  {job['status']:<10} {p['frames_done']}/{p['frames_total']} frames  {job['scene']['name']}"
    if job.get("error"):
        line += f"  error: {job['error']} ({job.get('error_code')})"
    return line


def exit_code_of(job: dict) -> int:
    return {"COMPLETED": 0, "FAILED": EXIT_FAILED, "CANCELLED": EXIT_CANCELLED}.get(job["status"], EXIT_ERROR)


@app.command()
@friendly
def login(
    url: Annotated[str, typer.Option(help="The API's base URL.")] = configuration.DEFAULT_URL,
    key: Annotated[str, typer.Option(help="An API key (asked for when not given).", prompt=True, hide_input=True)] = "",
) -> None:
    """Check an API key against the API and save it (with the URL) in the config file, readable only by you."""
    Client(url, key).jobs(limit=1)
    path = configuration.save(configuration.Config(url=url.rstrip("/"), key=key))
    out.print(f"Logged in to {url}; saved to {path}")


@app.command()
@friendly
def submit(
    job_file: Annotated[Path | None, typer.Argument(help="A JSON file of job fields; flags override it.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Scene name (default: the scene file's name).")] = None,
    scene: Annotated[Path | None, typer.Option("--scene", help="A .blend file to upload (Blender renderer).")] = None,
    width: Annotated[int | None, typer.Option()] = None,
    height: Annotated[int | None, typer.Option()] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", help="png, jpeg or exr (Blender); a scene file's own by default.")
    ] = None,
    samples: Annotated[int | None, typer.Option()] = None,
    start: Annotated[int | None, typer.Option("--start", help="First frame.")] = None,
    end: Annotated[int | None, typer.Option("--end", help="Last frame.")] = None,
    frames: Annotated[
        str | None,
        typer.Option("--frames", help='Only these frames, instead of --start/--end: "1-100x2,150,200-210".'),
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Frames per chunk (a task in the API).")] = None,
    priority: Annotated[str | None, typer.Option(help="high, normal or low.")] = None,
    renderer: Annotated[str | None, typer.Option(help="simulated or blender.")] = None,
    callback_url: Annotated[str | None, typer.Option(help="POSTed the job when it ends (webhook).")] = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing", help="Render a scene file even if it reads files that are not packed (without them)."
        ),
    ] = False,
    encode: Annotated[
        list[str] | None,
        typer.Option(
            "--encode",
            metavar="FORMAT[:FPS]",
            help="Then a video of the frames: mp4 or webm, at FPS frames a second (default 24), e.g. mp4:24.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    download: Annotated[
        Path | None, typer.Option("--download", help="Then download its frames (and videos) here.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes a retried submit safe (default: random).")] = None,
    quote: Annotated[
        bool,
        typer.Option(
            "--quote", help="A dry run: render 3 of its frames as a scout job, wait, print the estimate (no job)."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job from flags and/or a job file; with --scene, upload the scene file first.

    With --quote, the farm checks the job as a submit, renders its first, middle and last frames as a small
    scout job, and this prints the full job's estimate: worker time, wall time at the live workers, dollars.
    """
    body: dict = {}
    if job_file is not None:
        try:
            body = json.loads(job_file.read_text())
        except ValueError as exc:
            raise ApiError(0, "invalid_job_file", f"{job_file} is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(0, "invalid_job_file", f"{job_file} must hold a JSON object of job fields")
    flags = {
        "scene": name, "width": width, "height": height, "output_format": output_format, "samples": samples,
        "frame_start": start, "frame_end": end, "chunk_size": chunk_size, "priority": priority,
        "renderer": renderer, "callback_url": callback_url,
    }  # fmt: skip
    body.update({k: v for k, v in flags.items() if v is not None})
    if frames is not None:  # a flag overrides the job file: its frame list replaces the file's first and last frame
        body = {k: v for k, v in body.items() if k not in ("frame_start", "frame_end")} | {"frames": frames}
    elif start is not None or end is not None:
        body.pop("frames", None)
    if allow_missing:
        body["fail_on_missing_files"] = False
    if encode:
        body["steps"] = [encode_step(text) for text in encode]
    api = client()
    if scene is not None:
        body.setdefault("renderer", "blender")
        body.setdefault("scene", scene.stem)
        size = scene.stat().st_size
        with Progress(TextColumn("upload {task.description}"), BarColumn(), TransferSpeedColumn(), console=err) as bar:
            task = bar.add_task(scene.name, total=size)
            body["scene_file"] = api.upload_scene(scene, progress=lambda n: bar.advance(task, n))
        if not {"frame_start", "frame_end", "frames"} & set(body):  # the file's range, known once a worker read it
            describe_scene_file(read_scene_file(api, body["scene_file"]))
    if quote:
        print_quote(api, api.submit(body, idempotency_key=idempotency_key or str(uuid.uuid4()), dry_run=True), as_json)
        return
    job = api.submit(body, idempotency_key=idempotency_key or str(uuid.uuid4()))
    if as_json and not (wait or download):
        show_json(job)
        return
    err.print(
        f"submitted {job['id']} ({job['progress']['frames_total']} frames: {job.get('frames')})",
        markup=False,
        highlight=False,
    )
    if not (wait or download):
        out.print(job["id"], markup=False, highlight=False)
        return
    job = follow(api, job["id"])
    if download is not None and job["status"] == "COMPLETED":
        fetch_all(api, job["id"], download, parallel=8)
    if as_json:
        show_json(job)
    else:
        out.print(summary_line(job), markup=False, highlight=False)
    raise typer.Exit(exit_code_of(job))


def print_quote(api: Client, scout: dict, as_json: bool) -> None:
    """Follow the scout job to its end; print its quote (or the scout's JSON); a scout that did not complete
    exits as `wait` does."""
    err.print(
        f"quoting {scout['quote']['frames']} frames: scout job {scout['id']} renders frames {scout['frames']}",
        markup=False,
        highlight=False,
    )
    scout = follow(api, scout["id"])
    if scout["status"] != "COMPLETED":
        out.print(summary_line(scout), markup=False, highlight=False)
        raise typer.Exit(exit_code_of(scout))
    if as_json:
        show_json(scout["quote"])
    else:
        out.print(quote_line(scout["quote"]), markup=False, highlight=False)


def encode_step(text: str) -> dict:
    """`mp4:24` (or `webm`, 24 fps) as the API's encode step; the API checks the rest."""
    fmt, _, fps = text.partition(":")
    if not fps.strip().isdigit() and fps:
        raise ApiError(0, "invalid_encode", f"--encode {text}: the frame rate must be a whole number (mp4:24)")
    return {"type": "encode", "format": fmt.strip(), "fps": int(fps) if fps else 24}


def read_scene_file(api: Client, sha256: str, *, timeout: float = 600.0) -> dict:
    """The uploaded file's settings, waiting (seconds, or for a free worker) while the farm's Blender reads it."""
    deadline = time.monotonic() + timeout
    with err.status("reading the scene file's settings...", spinner="dots"):
        while (asset := api.asset(sha256))["inspection"]["state"] == "pending":
            if time.monotonic() > deadline:
                raise ApiError(
                    0, "timeout", f"the farm has not read the scene file after {timeout:g} s; give --start/--end"
                )
            time.sleep(1.0)
    if asset["inspection"]["state"] == "failed":
        raise ApiError(
            422, "scene_file_unreadable", f"Blender could not read the scene file: {asset['inspection']['error']}"
        )
    return asset


def describe_scene_file(asset: dict) -> None:
    """One line of the file's settings, then what the farm will change or refuse (one line each)."""
    s, inspection = asset["settings"], asset["inspection"]
    err.print(
        f"scene file: {s['engine']}, frames {s['frame_start']}-{s['frame_end']}, {s['width']}x{s['height']}, "
        f"{s['samples']} samples, {s['output_format']}{' with alpha' if s['film_transparent'] else ''}",
        markup=False,
        highlight=False,
    )
    for line in inspection["substitutions"]:
        err.print(f"  note: {line}", markup=False, highlight=False)
    for missing in inspection["missing_files"]:
        err.print(
            f"  not packed: {missing['kind']} {missing['name']} ({missing['path']})", markup=False, highlight=False
        )


def follow(api: Client, job_id: str, *, interval: float = 1.0, timeout: float | None = None) -> dict:
    """Poll until the job ends, with a live bar of frames done and the ETA; the final job."""
    deadline = None if timeout is None else time.monotonic() + timeout
    job = api.job(job_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames  ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=err, transient=not err.is_terminal) as bar:
        task = bar.add_task(job["status"], total=job["progress"]["frames_total"], eta="-")
        while True:
            p = job["progress"]
            bar.update(
                task, completed=p["frames_done"], description=f"{job_id[:8]} {doing(job)}", eta=eta(p["eta_seconds"])
            )
            if job["status"] in FINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise ApiError(0, "timeout", f"job {job_id} is still {job['status']} after {timeout:g} s")
            time.sleep(interval)
            job = api.job(job_id)


def doing(job: dict) -> str:
    """The job's state, and while its frames are done and a step runs, that step's own progress."""
    step = next((s for s in job.get("steps") or () if s["status"] in ("QUEUED", "PROCESSING")), None)
    if job["status"] != "PROCESSING" or step is None:
        return job["status"]
    done, total = step["progress"]["frames_done"], step["progress"]["frames_total"]
    return f"{step['type']} {step['format']} {step['status']} {done}/{total}"


def fetch_all(api: Client, job_id: str, target: Path, *, parallel: int) -> None:
    with Progress(TextColumn("download"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("frames", total=None)
        summary = download_frames(
            api,
            job_id,
            target,
            parallel=parallel,
            on_plan=lambda total: bar.update(task, total=total),
            on_file=lambda item, fetched: bar.advance(task),
        )
    err.print(
        f"{summary.total} files in {target}: {summary.downloaded} downloaded, {summary.skipped} already there "
        "(every file checked against its SHA-256)",
        markup=False,
        highlight=False,
    )


@app.command()
@friendly
def status(job_id: JobRef, as_json: JsonFlag = False) -> None:
    """Show a job: status, progress, ETA, error."""
    api = client()
    job = api.job(api.resolve(job_id))
    if as_json:
        show_json(job)
        return
    p = job["progress"]
    out.print(summary_line(job), markup=False, highlight=False)
    if job.get("frames"):
        out.print(f"  frames {job['frames']}", markup=False, highlight=False)
    out.print(
        f"  chunks {p['chunks_done']}/{p['chunks_total']}  ETA {eta(p['eta_seconds'])}  priority {job['priority']}"
        f"  attempt {job['attempt']}  created {job['created_at']}",
        markup=False,
        highlight=False,
    )
    for warning in job.get("warnings", []):
        out.print(f"  warning: {warning}", markup=False, highlight=False)


@app.command("wait")
@friendly
def wait_command(
    job_id: JobRef,
    timeout: Annotated[float | None, typer.Option(help="Give up (exit 1) after this many seconds.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Follow a job with a live progress bar; exit 0 when COMPLETED, 3 when FAILED, 4 when CANCELLED."""
    api = client()
    job = follow(api, api.resolve(job_id), interval=interval, timeout=timeout)
    if as_json:
        show_json(job)
    else:
        out.print(summary_line(job), markup=False, highlight=False)
    raise typer.Exit(exit_code_of(job))


@app.command("list")
@friendly
def list_command(
    status_filter: Annotated[str | None, typer.Option("--status", help="Only jobs in this state (any case).")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (1-100).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="The next page (printed after a page).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your jobs, newest first: one line each, its full id first."""
    page = client().jobs(status=status_filter.upper() if status_filter else None, limit=limit, cursor=cursor)
    if as_json:
        show_json(page)
        return
    more = page["next_cursor"] and f"more: renderctl list --cursor {page['next_cursor']}"
    if not page["jobs"]:
        # A filtered page reads a share of the owner's jobs; it may find none and still have more below.
        out.print("No jobs." if not more else "No jobs among those this page read.")
        if more:
            out.print(more, markup=False, highlight=False)
        return
    rows = [("ID", "STATUS", "FRAMES", "PRIORITY", "CREATED", "SCENE")]
    for job in page["jobs"]:
        p = job["progress"]
        created = job["created_at"][:16].replace("T", " ")  # to the minute, UTC; --json has it exactly
        frames = f"{p['frames_done']}/{p['frames_total']}"
        rows.append((job["id"], job["status"], frames, job["priority"], created, job["scene"]["name"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        # Plain columns, not a table that would shorten cells to fit the terminal: ids stay whole.
        line = "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
        out.print(f"{line}  {row[5]}", markup=False, highlight=False)
    if more:
        out.print(more, markup=False, highlight=False)


@app.command()
@friendly
def cancel(
    job_id: JobRef,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a job (QUEUED at once; PROCESSING between frames)."""
    api = client()
    job_id = api.resolve(job_id)
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Cancel job {job_id}?"):
        raise typer.Exit(EXIT_ERROR)
    job = api.cancel(job_id)
    show_json(job) if as_json else out.print(summary_line(job), markup=False, highlight=False)


@app.command()
@friendly
def retry(job_id: JobRef, as_json: JsonFlag = False) -> None:
    """Run a FAILED or CANCELLED job again (only its unfinished chunks)."""
    api = client()
    job = api.retry(api.resolve(job_id))
    show_json(job) if as_json else out.print(summary_line(job), markup=False, highlight=False)


@app.command()
@friendly
def download(
    job_id: JobRef,
    directory: Annotated[Path, typer.Argument(help="Where the frames go (created if missing).")],
    parallel: Annotated[int, typer.Option(help="Downloads at once.")] = 8,
) -> None:
    """Download a job's frames, its videos (encode steps) and manifest.json, in parallel, each checked against
    its SHA-256.

    Files already there with the right checksum are skipped, so running it again resumes.
    """
    api = client()
    fetch_all(api, api.resolve(job_id), directory, parallel=parallel)


@app.command()
@friendly
def logs(
    job_id: JobRef,
    chunk: Annotated[int | None, typer.Option(help="Only this chunk.")] = None,
) -> None:
    """Print the render logs of a job's chunks (renderers that write none have none)."""
    api = client()
    job_id = api.resolve(job_id)
    indexes = [chunk] if chunk is not None else [t["index"] for t in api.tasks(job_id)]
    for index in indexes:
        entry = api.log(job_id, index)
        if entry is None:
            err.print(f"chunk {index}: no render log", markup=False, highlight=False)
            continue
        out.print(
            f"--- chunk {index}" + (" (truncated)" if entry.get("truncated") else ""), markup=False, highlight=False
        )
        text = entry["log"]  # as the renderer wrote it: out() reads no markup and wraps nothing
        out.out(text, end="" if text.endswith("\n") else "\n", highlight=False)


@app.command()
@friendly
def usage(as_json: JsonFlag = False) -> None:
    """Your spend this calendar month (UTC): worker time, dollars, and your budget with what is left of it."""
    spent = client().usage()
    show_json(spent) if as_json else out.print(usage_line(spent), markup=False, highlight=False)


def main() -> None:
    app()
