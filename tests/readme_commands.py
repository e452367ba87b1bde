"""The README as a script: what a user following it line by line types, writes and runs.

`steps(text)` turns README.md into an ordered list of steps:

- a ```sh (bash, shell) block: one command per line, `#` comments stripped (outside
  quotes), lines ending in `\\` joined with the next;
- a ```console block: the lines starting with `$ ` are commands (the rest is output);
- a ```yaml block whose first line is a comment naming a file (`# my_grid.yaml: ...`):
  that file, written as the block stands (a user copies it); an unnamed one is a fragment
  and is not written;
- a ```python block: one script, run on its own (so every README python block imports
  what it uses).

Other fenced blocks (tables, plain text) are not steps. Inline code in prose is not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHELL_LANGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
YAML_NAME = re.compile(r"^#\s*(?P<name>[\w.+/-]+\.ya?ml)\b")


@dataclass(frozen=True)
class Block:
    lang: str
    lines: tuple[str, ...]
    line: int            # 1-based line of the opening fence
    section: str         # the nearest heading above


@dataclass(frozen=True)
class Step:
    kind: str            # "command", "file" or "python"
    text: str            # the command, the file's content or the script
    line: int            # README line it comes from
    section: str
    name: str = ""       # the file's name for kind "file"

    def where(self) -> str:
        return f"README.md:{self.line} ({self.section})"


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            fence = m["fence"]
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(fence):
                body.append(lines[j])
                j += 1
            out.append(Block(m["info"].lower(), tuple(body), i + 1, section))
            i = j + 1
            continue
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        i += 1
    return out


def strip_comment(line: str) -> str:
    """The line up to a shell comment: a `#` at the start of a word, outside quotes."""
    quote = ""
    k = 0
    while k < len(line):
        ch = line[k]
        if ch == "\\" and quote != "'":
            k += 2                      # an escaped character, in or out of double quotes
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
        k += 1
    return line.rstrip()


def _join_continuations(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, line in lines:
        if pending is not None:
            n, line = pending[0], pending[1] + " " + line.lstrip()
            pending = None
        if line.endswith("\\"):
            pending = (n, line[:-1].rstrip())
            continue
        out.append((n, line))
    if pending is not None:
        out.append(pending)
    return out


def commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for each command of a shell or console block."""
    raw: list[tuple[int, str]] = []
    in_command = False
    for k, line in enumerate(block.lines):
        n = block.line + 1 + k
        if block.lang == "console":
            if line.startswith("$ "):
                raw.append((n, line[2:]))
                in_command = line.rstrip().endswith("\\")
            elif in_command:
                raw.append((n, line))
                in_command = line.rstrip().endswith("\\")
            continue
        raw.append((n, line))
    # comments first (a `\` before a comment is not a continuation in a shell either)
    stripped = [(n, strip_comment(line)) for n, line in raw]
    return [(n, c.strip()) for n, c in _join_continuations(stripped) if c.strip()]


def steps(text: str) -> list[Step]:
    out: list[Step] = []
    for b in blocks(text):
        if b.lang in SHELL_LANGS:
            out += [Step("command", c, n, b.section) for n, c in commands(b)]
        elif b.lang in ("yaml", "yml") and b.lines:
            m = YAML_NAME.match(b.lines[0].strip())
            if m:
                out.append(Step("file", "\n".join(b.lines) + "\n", b.line, b.section, m["name"]))
        elif b.lang in ("python", "py"):
            out.append(Step("python", "\n".join(b.lines) + "\n", b.line, b.section))
    return out
