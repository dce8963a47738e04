#!/usr/bin/env python
"""Django's command-line utility for the render farm.

While `make run` is up, commands run from another terminal target its local stack: its settings are read
from `.devstack/env` (see jobs/devstack/envfile.py) unless AWS_ENDPOINT_URL or RENDER_ENV=production is set.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "renderproject.settings")
    if sys.argv[1:2] != ["devstack"]:  # the stack itself starts from the shell's settings
        from jobs.devstack.envfile import use_local_stack

        use_local_stack(os.environ, sys.stderr)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
