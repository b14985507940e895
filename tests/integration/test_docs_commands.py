"""Every command in the docs' shell blocks is one of ours, with options it really has.

The shell code blocks (```sh, ```bash) of README.md and docs/*.md are split
into commands; each must run a console script of pyproject, `faust -A
processor`, or a target of the Makefile, and every option it passes must
appear in that command's own `--help`. What the commands do is exercised by
the end-to-end tests (tests/e2e: pipeline, rebuild, export while processing,
observability, demo) and by `make demo`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from processor.ledger_admin import cli as admin_cli
from tests.integration.test_deploy_files import console_scripts

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
#: Also indented ones (a block inside a list item).
SHELL_BLOCK = re.compile(r"^[ \t]*```(?:sh|bash|shell)\n(.*?)^[ \t]*```", re.M | re.S)
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>&1"}
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def shell_lines(text: str) -> list[str]:
    lines = []
    for block in SHELL_BLOCK.findall(text):
        lines.extend(line for line in block.replace("\\\n", " ").splitlines() if line.strip())
    return lines


def commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line: no comments, redirections or assignments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in SEPARATORS:
            found.append([])
        elif token in REDIRECTIONS:
            skip_next = True  # the file name
        elif not found[-1] and ASSIGNMENT.match(token):
            continue  # VAR=value before the command
        else:
            found[-1].append(token)
    return [argv for argv in found if argv]


def documented_commands() -> list[tuple[str, list[str]]]:
    return [
        (f"{doc.relative_to(ROOT)}: {line.strip()}", argv)
        for doc in DOCS
        for line in shell_lines(doc.read_text())
        for argv in commands(line)
    ]


@cache
def help_text(*argv: str) -> str:
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{' '.join(argv)} --help failed: {done.stderr}"
    return done.stdout


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


def options(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("-") and a != "-"]


def assert_in_help(option: str, text: str, where: str) -> None:
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
        f"{where}: {option} is not in the command's --help"
    )


def test_the_docs_have_shell_blocks_to_check() -> None:
    found = documented_commands()
    names = {argv[0] for _, argv in found}
    assert len(found) >= 20, found
    assert {"make", "faust", "produce-csv", "export-snapshot", "ledger-admin"} <= names


@pytest.mark.parametrize(
    ("where", "argv"), documented_commands(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_documented_command_is_ours_and_its_options_exist(where: str, argv: list[str]) -> None:
    first = argv[0]
    if first == ".":
        assert argv[1:] == [".venv/bin/activate"], f"{where}: only the venv may be sourced"
        return
    if first == "make":
        unknown = {a for a in argv[1:] if not a.startswith("-") and "=" not in a} - make_targets()
        assert not unknown, f"{where}: no such make target {unknown}"
        return
    if first == "faust":
        assert argv[1:4] == ["-A", "processor", "worker"], f"{where}: the app is -A processor"
        text = help_text("faust") + help_text("faust", "-A", "processor", "worker")
        for option in options(argv[4:]):
            assert_in_help(option, text, where)
        return
    assert first in console_scripts(), f"{where}: {first} is not a console script of ours"
    words = [a for a in argv[1:] if not a.startswith("-")]
    if first == "ledger-admin":
        assert words and words[0] in admin_cli.commands, f"{where}: which subcommand?"
        text = help_text(first, words[0])
    else:
        text = help_text(first)
    for option in options(argv[1:]):
        assert_in_help(option, text, where)
