"""`make test` runs pytest in three xdist workers with `--dist loadgroup`: the tests of one `xdist_group` (the
Blender tests, the browser tests, the CDK synth) run on one worker, so Blender renders do not pile up on the 2
cores and the CDK app is synthesized once. Some pytest versions make xdist drop the groups without a word
(pytest-dev/pytest-xdist#1386, pytest 9.2): this checks that the installed pair still groups."""

import subprocess
import sys

GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("n", range(8))
def test_grouped(n):
    print("worker", os.environ["PYTEST_XDIST_WORKER"])
"""

ALONE = """
def test_alone_one():
    pass


def test_alone_two():
    pass
"""


def test_the_tests_of_one_xdist_group_run_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_alone.py").write_text(ALONE)
    plugins = ["-p", "no:cacheprovider", "-p", "no:django"]  # a bare session: not this project's settings
    command = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", *plugins]
    command += ["-c", "/dev/null", "--rootdir", str(tmp_path), str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {line.split()[0] for line in run.stdout.splitlines() if "test_grouped[" in line and "PASSED" in line}
    assert len(workers) == 1, (
        "the tests of one xdist_group ran on several workers: pytest-xdist's --dist loadgroup has no effect with "
        f"this pytest (pytest-dev/pytest-xdist#1386); install the pytest requirements-dev.txt pins\n{run.stdout}"
    )
