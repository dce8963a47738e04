"""`manage.py devstack`: the whole local system (emulator, resources, render workers, one webhook worker,
the sweeper, API) until Ctrl-C.

While it runs, `.devstack/env` says how to reach it, so `python manage.py ...` from another terminal of
this checkout targets this stack (see jobs/devstack/envfile.py); the file is removed when it stops.
"""

import os
import shutil
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs import wiring
from jobs.devstack import envfile
from jobs.devstack.stack import EMULATOR_CREDENTIALS, ROOT, Stack, wait_for_http
from jobs.domain import utcnow
from jobs.sandbox import SandboxUnavailable
from jobs.services import api_key_create
from jobs.services.api_keys import SCOPE_HIGH

# A copy-paste example for the banner: build the demo scene, then one renderctl command uploads it (straight
# to S3, with a progress bar), submits, follows the job and downloads its frames (docs/using/blender.md: with curl).
BLENDER_EXAMPLE = r"""
Blender jobs: rendered here ({binary}). Build the demo scene, then upload it and render 24 frames in 2 chunks:
  blender -b --factory-startup --python scenes/demo_scene.py -- /tmp/demo.blend
  .venv/bin/renderctl submit --scene /tmp/demo.blend --chunk-size 12 --wait --download demo-frames/
"""


class Command(BaseCommand):
    help = (
        "Start the emulator (unless AWS_ENDPOINT_URL is set), bootstrap, the render workers, one webhook worker, "
        "the sweeper and the API."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("RENDER_API_PORT", "8000")))
        parser.add_argument("--emulator-port", type=int, default=int(os.environ.get("RENDER_EMULATOR_PORT", "4566")))
        parser.add_argument("--workers", type=int, default=1, help="Worker processes (make run WORKERS=N).")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.CELERY_WORKER_CONCURRENCY,
            help="Pool processes of each worker (make run CONCURRENCY=C; default RENDER_WORKER_CONCURRENCY).",
        )

    def handle(self, *args, port: int, emulator_port: int, workers: int, concurrency: int, **options):
        if workers < 1 or concurrency < 1:
            raise CommandError("--workers and --concurrency must be at least 1.")
        env_file = envfile.env_path()
        running = envfile.read(env_file)
        if running is not None:
            raise CommandError(
                f"A local stack of this checkout is already running (pid {running[envfile.PID_VARIABLE]}, "
                f"{running.get('AWS_ENDPOINT_URL')}); stop it first (its settings are in {env_file})."
            )
        stack = Stack(log_dir=ROOT / ".devstack" / "logs")
        # Webhook receivers of a laptop listen on 127.0.0.1 (docs/using/webhooks.md): allowed here unless told not to.
        stack.env["RENDER_WEBHOOK_ALLOW_PRIVATE"] = os.environ.get("RENDER_WEBHOOK_ALLOW_PRIVATE", "1")
        stopping = False

        def on_signal(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        try:
            credentials = None  # an endpoint of the user's own: other shells keep their credentials for it
            if os.environ.get("AWS_ENDPOINT_URL"):
                endpoint = os.environ["AWS_ENDPOINT_URL"]
                self.stdout.write(f"Using AWS endpoint {endpoint}")
            else:
                endpoint = stack.start_emulator(emulator_port)
                credentials = EMULATOR_CREDENTIALS
                self.stdout.write(f"Emulator on {endpoint} (request counts: {endpoint}/_emulator/requests)")
            os.environ.update(stack.env)
            wiring.reset()
            wiring.bootstrap_all()
            key = api_key_create(
                repo=wiring.api_key_repository(), owner="dev", now=utcnow(), scopes=frozenset({SCOPE_HIGH})
            )
            values = envfile.stack_values(
                os.environ,
                endpoint=endpoint,
                credentials=credentials,
                table=settings.RENDER_TABLE_NAME,
                bucket=settings.RENDER_BUCKET_NAME,
                queue_prefix=settings.RENDER_QUEUE_PREFIX,
            )
            envfile.write(env_file, values)
            for n in range(workers):  # worker, worker-2, ...: each logs to .devstack/logs/<name>.log
                stack.start_worker("worker" if n == 0 else f"worker-{n + 1}", concurrency=concurrency)
            stack.start_webhook_worker()  # deliveries have their own queue and workers (docs/using/webhooks.md)
            stack.start_sweeper()
            api = stack.start_api(port)
            wait_for_http(f"{api}/readyz", timeout=30)
            self._banner(api, key, stack.log_dir, env_file)
            while not stopping:
                for name, proc in stack.processes.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping (logs in {stack.log_dir})")
                        stopping = True
                        break
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stdout.write("Stopping...")
            envfile.remove(env_file)
            stack.stop_all()

    @staticmethod
    def _blender_example(api: str, key: str) -> str:
        """Whether Blender jobs render here, and a copy-paste example: build the demo scene, upload, submit."""

        binary = shutil.which(settings.RENDER_BLENDER_BINARY)
        if binary is None:
            return (
                f"\nBlender jobs: NOT rendered here ({settings.RENDER_BLENDER_BINARY!r} is not on the PATH); they fail "
                "with 'Blender cannot run on this worker'. Install Debian's blender and restart to render them.\n"
            )
        try:
            wiring.sandbox().check()
        except SandboxUnavailable as exc:
            return (
                f"\nBlender jobs: NOT rendered here: Blender runs only sandboxed, and {exc}. Install Debian's "
                "bubblewrap and restart (or, for a local measurement only, RENDER_SANDBOX=none).\n"
            )
        where = f"{binary}, sandboxed by {settings.RENDER_SANDBOX}"
        return BLENDER_EXAMPLE.replace("{binary}", where).replace("{api}", api).replace("{key}", key)

    def _banner(self, api: str, key: str, log_dir, env_file) -> None:
        self.stdout.write(
            f"""
Render farm is up.
  Console:    {api}/   (sign in with the key below)
  API:        {api}/api/   (browsable in a browser once signed in)
  API docs:   {api}/api/docs   (Swagger; schema: {api}/api/schema; these docs as a site: make docs)
  Health:     {api}/healthz  {api}/readyz
  Logs:       {log_dir}
  API key (owner "dev"):
{key}

Try the CLI (renderctl, installed in .venv/bin):
  export RENDER_API_URL={api} RENDER_API_KEY={key}
  .venv/bin/renderctl submit --name demo --width 640 --height 360 --end 24 --chunk-size 4 --wait --download frames/
  .venv/bin/renderctl list          # status ID, wait ID, cancel ID, retry ID, download ID DIR, logs ID

Or curl:
  curl -s -X POST {api}/api/jobs -H "Authorization: Bearer {key}" \\
       -H "Content-Type: application/json" \\
       -d '{{"scene": "demo", "width": 640, "height": 360, "frame_start": 1, "frame_end": 1}}'
  curl -s {api}/api/jobs -H "Authorization: Bearer {key}"
  (more in docs/using/api.md: frames in chunks, cancel, retry, tasks, priorities, Idempotency-Key)
{self._blender_example(api, key)}
From another terminal in this checkout, commands target this stack (settings in {env_file}):
  make key OWNER=alice                                 # another API key
  make worker CONCURRENCY=2                            # one more worker (its log in that terminal)
  .venv/bin/python manage.py dlq list                  # or sweep, create_api_key, revoke_api_key ...

Ctrl-C stops everything started here.
""",
        )
