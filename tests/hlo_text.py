"""Reading compiled HLO text: computations, what each calls, and the ops inside (test helper)."""

from __future__ import annotations

import re

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->.*\{\s*$")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")


def computations(text: str) -> dict[str, str]:
    """Computation name -> its body text."""
    out: dict[str, str] = {}
    name, lines = None, []
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            name, lines = header.group(1), []
        elif line.strip() == "}" and name is not None:
            out[name] = "\n".join(lines)
            name = None
        elif name is not None:
            lines.append(line)
    return out


def called(body: str) -> set[str]:
    names = set(_CALLS.findall(body))
    for group in _BRANCHES.findall(body):
        names |= {n.strip().lstrip("%") for n in group.split(",") if n.strip()}
    return names


def reachable(comps: dict[str, str], root: str) -> set[str]:
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in comps:
            continue
        seen.add(name)
        todo.extend(called(comps[name]))
    return seen


def while_loops(text: str, op_name_part: str) -> list[str]:
    """Body computations of the while loops whose op_name metadata contains `op_name_part`."""
    bodies = []
    for line in text.splitlines():
        if " while(" in line and op_name_part in line:
            match = re.search(r"body=%?([\w.\-]+)", line)
            if match:
                bodies.append(match.group(1))
    return bodies


def collectives_in(comps: dict[str, str], root: str) -> list[str]:
    """Collective ops anywhere in `root` or what it calls."""
    found = []
    for name in reachable(comps, root):
        for line in comps[name].splitlines():
            found += [c for c in COLLECTIVES if re.search(rf"\b{c}(-start|-done)?\(", line)]
    return found
