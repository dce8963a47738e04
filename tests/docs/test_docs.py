"""The docs name only what exists, and the site builds strictly.

Every repository path, test, setting, make target and README link the README and docs/ name is checked
against the tree: a doc that names a moved file, a renamed test or a removed setting fails here, as does a
setting read in renderproject/settings.py that docs/operating/configuration.md does not list. The MkDocs
site is built with `--strict` (a broken link or anchor fails it). What counts as "named" is defined by the
extractors below; tests/docs also checks that each of them catches what it should.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "operating" / "configuration.md"

# The repository's top-level entries a path in the docs may start with (S3 keys such as `jobs/<id>/...` hold a
# placeholder and are not paths; `assets/` and `scenes/<owner slug>/...` are S3 or cache layouts).
TOP_LEVEL = (
    "jobs/",
    "tests/",
    "bench/",
    "bin/",
    "infra/",
    "renderproject/",
    "renderctl/",
    "scenes/",
    "docs/",
    ".ci/",
)
TOP_FILES = {
    "Makefile",
    "Dockerfile",
    "README.md",
    "mkdocs.yml",
    "manage.py",
    "cdk.json",
    "pyproject.toml",
    "requirements.txt",
    "requirements-dev.txt",
    ".importlinter",
    ".gitignore",
    ".dockerignore",
}
SETTING = re.compile(r"\b(?:RENDER|DJANGO|CELERY|GUNICORN)_[A-Z0-9_]*[A-Z0-9](?:_\*)?(?![A-Za-z0-9_])")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
TEST_NAME = re.compile(r"^test_[a-z0-9_]+$")
# `make run`, `make run WORKERS=2`, `make -o .venv/.installed test`: the target is the first word that is not a
# variable assignment or an option (with its argument).
MAKE_TARGET = re.compile(r"(?:^|[\s;&|(])make\s+((?:[A-Z_]+=\S+\s+|-[a-zA-Z]\s+\S+\s+)*)([a-z][a-z0-9_-]*)")


@dataclass(frozen=True)
class Mention:
    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def code_spans(text: str) -> list[tuple[int, str]]:
    """(offset, content) of every inline code span outside fenced blocks, and of every fenced block's body."""
    spans = []
    blanked = text
    for fence in FENCE.finditer(text):
        spans.append((fence.start(), fence.group(0)))
        blanked = blanked[: fence.start()] + " " * (fence.end() - fence.start()) + blanked[fence.end() :]
    for span in CODE_SPAN.finditer(blanked):
        spans.append((span.start(2), span.group(2)))
    return sorted(spans)


def inline_spans(text: str) -> list[tuple[int, str]]:
    return [(o, s) for o, s in code_spans(text) if not s.startswith(("```", "~~~"))]


# --- what the docs name -----------------------------------------------------------------------------------


def named_paths(name: str, text: str) -> list[tuple[Mention, str, str | None]]:
    """Repository paths in inline code: `jobs/services/rendering.py`, `jobs/domain/`, and a symbol after one:
    `jobs/services/rendering.py: chunk_process` (the file must define it). `tests/x.py::test_y` counts its path
    here and its test in named_tests. Returns (where, path, symbol or None)."""
    found = []
    for offset, span in inline_spans(text):
        where = Mention(name, _line_of(text, offset), span.strip())
        with_symbol = re.fullmatch(r"\s*(\S+?):\s+([A-Za-z_][A-Za-z0-9_.]*)(?:\(\))?\s*", span)
        if with_symbol and with_symbol.group(1).startswith(TOP_LEVEL):
            found.append((where, with_symbol.group(1), with_symbol.group(2).split(".")[-1]))
            continue
        for token in re.split(r"[\s,;()]+", span.strip()):
            path = token.rstrip(".").partition("::")[0]
            if any(c in path for c in "<>*{}$|:") or "..." in path:
                continue  # S3 keys and layouts (`jobs/<id>/...`), globs, URLs
            if path.startswith(TOP_LEVEL) or path in TOP_FILES:
                found.append((where, path, None))
    return found


def named_tests(name: str, text: str) -> list[tuple[Mention, str | None, str]]:
    """Tests the docs name: `tests/m.py::test_x`, `::test_x` (in the module last named before it in the same
    file) and a bare `test_x` (in some test module). Returns (where, module or None, test name)."""
    found = []
    last_module = None
    for offset, span in inline_spans(text):
        token = span.strip()
        where = Mention(name, _line_of(text, offset), token)
        module, sep, test = token.partition("::")
        if module.startswith("tests/") and module.endswith(".py"):
            last_module = module
            if sep:
                found.append((where, module, test))
        elif sep and not module and TEST_NAME.match(test):
            if last_module is None:
                found.append((where, "(no module named before it)", test))
            else:
                found.append((where, last_module, test))
        elif TEST_NAME.match(token):
            found.append((where, None, token))
    return found


def named_settings(name: str, text: str) -> list[tuple[Mention, str]]:
    """Every RENDER_*, DJANGO_*, CELERY_*, GUNICORN_* name anywhere in the text (prose included)."""
    return [(Mention(name, _line_of(text, m.start()), m.group(0)), m.group(0)) for m in SETTING.finditer(text)]


def named_make_targets(name: str, text: str) -> list[tuple[Mention, str]]:
    """`make <target>` in inline code and fenced blocks (prose "make" is English)."""
    found = []
    for offset, span in code_spans(text):
        for match in MAKE_TARGET.finditer(span):
            where = Mention(name, _line_of(text, offset + match.start()), match.group(0).strip())
            found.append((where, match.group(2)))
    return found


def readme_links(text: str) -> list[tuple[Mention, str]]:
    """Relative links of a Markdown file: [text](target), images included; web links are left alone."""
    found = []
    blanked = FENCE.sub(lambda m: " " * len(m.group(0)), text)
    for match in re.finditer(r"\]\(([^)\s]+)\)", blanked):
        target = match.group(1)
        if not re.match(r"^[a-z]+:", target):
            found.append((Mention("README.md", _line_of(text, match.start()), target), target))
    return found


# --- what the tree has -------------------------------------------------------------------------------------


def defines(path: Path, symbol: str) -> bool:
    """The Python file defines `symbol` (def, class, assignment, import) anywhere, methods included."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == symbol:
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == symbol for t in targets):
                return True
        if isinstance(node, ast.ImportFrom | ast.Import) and any((a.asname or a.name) == symbol for a in node.names):
            return True
    return False


@cache
def defined_tests() -> dict[str, frozenset[str]]:
    """Test function names per module under tests/ (module-level and in classes)."""
    out = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        out[_rel(path)] = frozenset(
            n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
        )
    return out


CODE_GLOBS = ("jobs/**/*.py", "renderproject/*.py", "renderctl/*.py", "bench/*.py", "infra/**/*.py", "manage.py")
SHELL_FILES = ("bin/entrypoint", "Makefile", "Dockerfile")


@cache
def names_in_code() -> tuple[frozenset[str], tuple[re.Pattern, ...]]:
    """Setting names the code uses: every string constant that is exactly such a name (os.environ["X"],
    env("X", ...), a container's environment in infra), every name assigned in settings.py (read as
    `settings.X`), every f-string's pattern (`f"RENDER_QUEUE_URL_{p}"`), and every name in the shell files."""
    names: set[str] = set()
    patterns: list[re.Pattern] = []
    for pattern in CODE_GLOBS:
        for path in ROOT.glob(pattern):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and SETTING.fullmatch(node.value):
                    names.add(node.value)
                elif isinstance(node, ast.JoinedStr) and (regex := _fstring_pattern(node)):
                    patterns.append(regex)
                elif path.name == "settings.py" and isinstance(node, ast.Assign):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name) and SETTING.fullmatch(t.id))
    for shell in SHELL_FILES:
        names.update(m.group(0) for m in SETTING.finditer((ROOT / shell).read_text()))
    return frozenset(names), tuple(patterns)


def _fstring_pattern(node: ast.JoinedStr) -> re.Pattern | None:
    parts = [re.escape(v.value) if isinstance(v, ast.Constant) else "[A-Z0-9_]+" for v in node.values]
    regex = "".join(parts)
    if not SETTING.match(regex.replace("\\", "")) or not isinstance(node.values[0], ast.Constant):
        return None
    return re.compile(regex)


def is_in_code(setting: str) -> bool:
    names, patterns = names_in_code()
    if setting.endswith("_*"):
        prefix = setting[:-1]
        return any(n.startswith(prefix) for n in names)
    return setting in names or any(p.fullmatch(setting) for p in patterns)


def settings_read(source: str) -> list[tuple[int, str | re.Pattern]]:
    """(line, name or pattern) of every environment variable the settings module reads: env(...), env_int,
    env_float, env_bool, os.environ.get(...), os.environ[...], os.getenv(...)."""
    tree = ast.parse(source)
    helpers = {"env", "env_int", "env_float", "env_bool", "_env_number"}
    # The helpers read os.environ[name] for whatever name they are given: their callers are what counts.
    inside_helpers = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in helpers
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in inside_helpers:
            continue
        arg = None
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else ast.unparse(func)
            if called in helpers - {"_env_number"} | {"os.environ.get", "os.getenv"} and node.args:
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            arg = node.slice
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append((node.lineno, arg.value))
        elif isinstance(arg, ast.JoinedStr):
            parts = [re.escape(v.value) if isinstance(v, ast.Constant) else "[A-Z0-9_]+" for v in arg.values]
            found.append((node.lineno, re.compile("".join(parts))))
        elif arg is not None:
            found.append((node.lineno, f"<not a literal: {ast.unparse(arg)}>"))
    return found


@cache
def makefile_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(m.group(1) for m in re.finditer(r"^([a-zA-Z0-9_.-]+)\s*:(?!=)", text, re.M))


def slugify(heading: str) -> str:
    """The anchor MkDocs' toc extension (and GitHub, for these headings) gives a heading."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slugify(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


# --- the checks ---------------------------------------------------------------------------------------------


def problems_paths(name: str, text: str) -> list[str]:
    out = []
    for where, path, symbol in named_paths(name, text):
        target = ROOT / path
        if not target.exists():
            out.append(f"{where}: {path} does not exist")
        elif symbol and target.suffix == ".py" and not defines(target, symbol):
            out.append(f"{where}: {path} defines no {symbol}")
    return out


def problems_tests(name: str, text: str) -> list[str]:
    tests = defined_tests()
    out = []
    for where, module, test in named_tests(name, text):
        if module is None:
            if not any(test in names for names in tests.values()):
                out.append(f"{where}: no test module defines {test}")
        elif module not in tests:
            out.append(f"{where}: {module} is not a test module")
        elif test not in tests[module]:
            out.append(f"{where}: {module} defines no {test}")
    return out


def problems_settings(name: str, text: str) -> list[str]:
    return [f"{where}: {s} is read nowhere in the code" for where, s in named_settings(name, text) if not is_in_code(s)]


def problems_make(name: str, text: str) -> list[str]:
    targets = makefile_targets()
    named = named_make_targets(name, text)
    return [f"{where}: the Makefile has no target {t!r}" for where, t in named if t not in targets]


def problems_links(text: str, base: Path) -> list[str]:
    out = []
    for where, target in readme_links(text):
        path, _, anchor = target.partition("#")
        file = (base / path).resolve() if path else base / "README.md"
        if not file.exists():
            out.append(f"{where}: {path} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            out.append(f"{where}: {path} has no heading #{anchor}")
    return out


def configuration_rows(page: str) -> set[str]:
    """The variables the page's tables list: the names in the first cell of each row."""
    first_cells = [line.split("|")[1] for line in page.splitlines() if line.startswith("| `")]
    return {
        name for cell in first_cells for name in re.findall(r"\b(?:RENDER|DJANGO|CELERY|GUNICORN|AWS)_[A-Z0-9_]+", cell)
    }


def problems_configuration(settings_source: str, page: str) -> list[str]:
    listed = configuration_rows(page)
    out = []
    for line, read in settings_read(settings_source):
        if isinstance(read, re.Pattern):
            if not any(read.fullmatch(s) for s in listed):
                out.append(f"renderproject/settings.py:{line}: no setting matching {read.pattern} in the page")
        elif read not in listed:
            out.append(f"renderproject/settings.py:{line}: {read} is not in the page")
    return out


DOC_IDS = [_rel(p) for p in doc_files()]


@pytest.fixture(params=DOC_IDS)
def doc(request) -> tuple[str, str]:
    return request.param, (ROOT / request.param).read_text()


def test_every_path_named_exists(doc):
    assert problems_paths(*doc) == []


def test_every_test_named_exists_in_its_module(doc):
    assert problems_tests(*doc) == []


def test_every_setting_named_is_read_by_the_code(doc):
    assert problems_settings(*doc) == []


def test_every_make_target_named_exists(doc):
    assert problems_make(*doc) == []


def test_the_readme_links_resolve():
    assert problems_links((ROOT / "README.md").read_text(), ROOT) == []


def test_every_setting_read_in_settings_py_is_on_the_configuration_page():
    source = (ROOT / "renderproject" / "settings.py").read_text()
    assert len(settings_read(source)) > 50  # the extractor sees the settings (not a vacuous pass)
    assert problems_configuration(source, CONFIGURATION.read_text()) == []


# --- the checks can fail --------------------------------------------------------------------------------------


def test_the_checks_catch_what_they_should():
    page = "\n".join(
        [
            "See `jobs/domain.py` and `jobs/services/rendering.py: no_such_function`.",
            "Held by `tests/unit/test_services.py::test_fanout_is_idempotent` and",
            "`tests/unit/test_fanout.py::test_no_such_test`, `::test_also_missing`, `test_nowhere_at_all`.",
            "The lease is `RENDER_LEASE_SECONDZ`; `make docz` serves it.",
            "```sh",
            "make run WORKERS=2 && make nope",
            "```",
        ]
    )
    assert problems_paths("x.md", page) == [
        "x.md:1: jobs/domain.py: jobs/domain.py does not exist",
        "x.md:1: jobs/services/rendering.py: no_such_function: jobs/services/rendering.py defines no no_such_function",
        "x.md:2: tests/unit/test_services.py::test_fanout_is_idempotent: tests/unit/test_services.py does not exist",
    ]
    assert problems_tests("x.md", page) == [
        "x.md:2: tests/unit/test_services.py::test_fanout_is_idempotent: "
        "tests/unit/test_services.py is not a test module",
        "x.md:3: tests/unit/test_fanout.py::test_no_such_test: tests/unit/test_fanout.py defines no test_no_such_test",
        "x.md:3: ::test_also_missing: tests/unit/test_fanout.py defines no test_also_missing",
        "x.md:3: test_nowhere_at_all: no test module defines test_nowhere_at_all",
    ]
    assert problems_settings("x.md", page) == [
        "x.md:4: RENDER_LEASE_SECONDZ: RENDER_LEASE_SECONDZ is read nowhere in the code"
    ]
    assert [p.rsplit(" ", 1)[1] for p in problems_make("x.md", page)] == ["'docz'", "'nope'"]
    assert problems_links("[a](docs/nope.md) [b](docs/glossary.md#no-such-term) [c](https://x.test)", ROOT) == [
        "README.md:1: docs/nope.md: docs/nope.md does not exist",
        "README.md:1: docs/glossary.md#no-such-term: docs/glossary.md has no heading #no-such-term",
    ]
    source = 'A = env_int("RENDER_NEW_THING", 1)\nB = os.environ.get(f"RENDER_QUEUE_URL_{p}")\n'
    assert problems_configuration(source, "| `RENDER_QUEUE_URL_HIGH` | unset | ... |\n`RENDER_NEW_THING` in prose") == [
        "renderproject/settings.py:1: RENDER_NEW_THING is not in the page"
    ]
    assert problems_configuration(source, "| `RENDER_NEW_THING` | `1` | ... |") == [
        "renderproject/settings.py:2: no setting matching RENDER_QUEUE_URL_[A-Z0-9_]+ in the page"
    ]


def test_the_real_checks_pass_on_good_names():
    page = (
        "`jobs/services/rendering.py: chunk_process`, `jobs/domain/`, "
        "`tests/unit/test_fanout.py::test_fanout_is_idempotent`, `RENDER_QUEUE_URL_HIGH`, `RENDER_SANDBOX_*`, "
        "`make run WORKERS=2`, `make -o .venv/.installed test`"
    )
    assert problems_paths("x.md", page) == []
    assert problems_tests("x.md", page) == []
    assert problems_settings("x.md", page) == []
    assert problems_make("x.md", page) == []
    assert [t for _, t in named_make_targets("x.md", page)] == ["run", "test"]


# --- the site -------------------------------------------------------------------------------------------------


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed (requirements-dev.txt)"
    return subprocess.run(
        [mkdocs, "build", "--strict", "--clean", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )


def test_the_site_builds_strictly(tmp_path):
    result = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "glossary" / "index.html").exists()


@pytest.mark.parametrize(
    "broken",
    ["[gone](using/no-such-page.md)", "[gone](glossary.md#no-such-term)", "[gone](#no-such-heading)"],
)
def test_the_strict_build_fails_on_a_broken_link_or_anchor(tmp_path, broken):
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    page = copy / "docs" / "index.md"
    page.write_text(page.read_text() + f"\n{broken}\n")
    result = build_site(copy / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such" in result.stderr
