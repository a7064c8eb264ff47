"""Docs that run: every ```sh, ```python and ```sql block in docs/*.md is executed
against a demo's output, unless the line before it opts out with a reason:

    <!-- doc-test: skip: needs a Kubernetes cluster -->

How each runs:

* python and sql blocks of one page run in order in one interpreter (a page is read
  like a notebook: later blocks use what earlier ones defined; sql goes to DuckDB),
  in a directory holding the demo's file in the Hive layout the pages describe
  (``data/node=demo-node/date=<day>/<file>``); the documented default output
  directory ``/var/lib/resctrl-pipeline`` stands for the demo's output directory;
* sh blocks run one by one with ``bash -euo pipefail`` from the repository root (as
  a user in a clone), with ``.venv/bin`` first on PATH; ``/var/lib/resctrl-pipeline``
  stands for the demo's output directory here too.

Outputs are not compared (the demo's numbers differ from run to run); a block that
raises or exits non-zero fails the test, naming the page and line.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.prerequisites import requires

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md"))
LANGS = ("sh", "python", "sql")
DEFAULT_OUTPUT = "/var/lib/resctrl-pipeline"
_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!-- doc-test: skip: (.+\S) -->$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str  # the reason, "" when it runs


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` in a language of :data:`LANGS`."""
    out: list[Block] = []
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if m[1] in LANGS:
            marker = _SKIP.match(lines[i - 1]) if i else None
            out.append(Block(path.name, i + 1, m[1], "\n".join(lines[i + 1 : end]) + "\n",
                             marker[1] if marker else ""))  # fmt: skip
        i = end + 1
    return out


def test_every_opt_out_gives_a_reason_and_precedes_a_block() -> None:
    for path in DOCS:
        lines = path.read_text().split("\n")
        for n, line in enumerate(lines):
            if line.startswith("<!-- doc-test"):
                assert _SKIP.match(line), f"{path.name}:{n + 1}: use <!-- doc-test: skip: WHY -->"
                nxt = _FENCE.match(lines[n + 1]) if n + 1 < len(lines) else None
                assert nxt and nxt[1] in LANGS, f"{path.name}:{n + 1}: no sh/python/sql block next"
    runnable = [b for p in DOCS for b in blocks(p) if not b.skip]
    assert {b.page for b in runnable} >= {"analysis.md", "output.md", "emulator.md"}


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("docs") / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "resctrl_pipeline", "demo", "--duration", "8s", "--pods", "6",
         "--output", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    yield out


def workdir(demo: Path, tmp: Path) -> Path:
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    hive = tmp / "data" / "node=demo-node" / f"date={day}"
    hive.mkdir(parents=True)
    for f in demo.glob("*.parquet"):
        shutil.copy(f, hive / f.name)
    return tmp


_RUNNER = '''
import sys
import duckdb
namespace = {"__name__": "__main__"}
for page, line, lang, text in BLOCKS:
    print(f"--- {page}:{line} ({lang})", flush=True)
    if lang == "sql":
        print(duckdb.sql(text))
    else:
        exec(compile(text, f"{page}:{line}", "exec"), namespace)
'''


def run_python(page_blocks: list[Block], cwd: Path,
               output: Path) -> subprocess.CompletedProcess[str]:  # fmt: skip
    todo = [(b.page, b.line, b.lang, b.text.replace(DEFAULT_OUTPUT, str(output)))
            for b in page_blocks]  # fmt: skip
    script = f"BLOCKS = {todo!r}\n{_RUNNER}"
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def run_sh(block: Block, output: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    text = block.text.replace(DEFAULT_OUTPUT, str(output))
    return subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


@pytest.mark.slow
@requires("fuse")
@pytest.mark.parametrize("page", [p.name for p in DOCS if any(not b.skip for b in blocks(p))])
def test_doc_snippets_run_against_a_demo(page: str, demo_output: Path, tmp_path: Path) -> None:
    page_blocks = [b for b in blocks(REPO / "docs" / page) if not b.skip]
    py = [b for b in page_blocks if b.lang in ("python", "sql")]
    if py:
        result = run_python(py, workdir(demo_output, tmp_path), demo_output)
        assert result.returncode == 0, f"{page}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for block in (b for b in page_blocks if b.lang == "sh"):
        result = run_sh(block, demo_output)
        assert result.returncode == 0, (
            f"{page}:{block.line}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
