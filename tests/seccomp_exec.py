"""Run a command under a unit file's seccomp rules, as systemd 252 would load them, without systemd.

    python tests/seccomp_exec.py UNIT [--only-write-execute] -- COMMAND...

Reads `SystemCallFilter=`, `SystemCallErrorNumber=`, `RestrictAddressFamilies=` and
`MemoryDenyWriteExecute=` from UNIT, expands the syscall groups with `systemd-analyze
syscall-filter`, loads the filters through libseccomp and execs COMMAND. With
`--only-write-execute` it loads only systemd's MemoryDenyWriteExecute= rules, whatever UNIT says.
The sandbox here has no systemd as PID 1, so this is how the tests check that the daemon works
inside the unit's filters. Standalone on purpose: it runs before `edged` is imported.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
AF_MAX = 46


def act_errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


class ArgCompare(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _libseccomp() -> ctypes.CDLL:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCompare),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


class Filter:
    """One seccomp filter under construction (libseccomp); `load()` installs it."""

    lib = _libseccomp()

    def __init__(self, default_action: int) -> None:
        self.context = self.lib.seccomp_init(default_action)

    def add(self, action: int, name: str, *compares: tuple[int, int, int, int]) -> None:
        number = self.lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a system call of this architecture
        array = (ArgCompare * max(len(compares), 1))(*(ArgCompare(*c) for c in compares))
        result = self.lib.seccomp_rule_add_array(self.context, action, number, len(compares), array)
        if result not in (0, -errno.EEXIST):
            raise OSError(-result, f"seccomp rule for {name}")

    def load(self) -> None:
        result = self.lib.seccomp_load(self.context)
        if result != 0:
            raise OSError(-result, "seccomp_load")


def settings(unit: Path, key: str) -> list[str]:
    """Every value of `key=` in the unit's [Service] section, in order."""
    prefix = key + "="
    return [
        line[len(prefix) :].strip()
        for line in unit.read_text().splitlines()
        if line.startswith(prefix)
    ]


def syscall_groups() -> dict[str, list[str]]:
    """@group -> its members (system calls and @groups), from systemd-analyze."""
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and line.startswith(" "):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= expand(groups[name], groups) if name.startswith("@") else {name}
    return found


def allowed_syscalls(unit: Path) -> set[str] | None:
    """The unit's allow list after its `~` entries, or None when it sets no filter."""
    groups = syscall_groups()
    allowed: set[str] | None = None
    for value in settings(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = expand(value.removeprefix("~").split(), groups)
        if deny:
            assert allowed is not None, "a deny list first is not emulated"
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    if allowed is not None:  # always allowed, by systemd.exec(5)
        allowed |= expand(["@default"], groups) | {"execve", "exit", "exit_group", "getrlimit"}
    return allowed


def write_execute_filter() -> Filter:
    """systemd's MemoryDenyWriteExecute=: no W+X mapping, nothing made executable later."""
    rules = Filter(SCMP_ACT_ALLOW)
    refuse = act_errno(errno.EPERM)
    for name in ("mmap", "mmap2"):
        both = PROT_WRITE | PROT_EXEC
        rules.add(refuse, name, (2, SCMP_CMP_MASKED_EQ, both, both))
    for name in ("mprotect", "pkey_mprotect"):
        rules.add(refuse, name, (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    rules.add(refuse, "shmat", (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
    return rules


def address_family_filter(unit: Path) -> Filter | None:
    families = " ".join(settings(unit, "RestrictAddressFamilies")).split()
    if not families:
        return None
    allowed = {int(getattr(socket, name)) for name in families}
    rules = Filter(SCMP_ACT_ALLOW)
    for family in range(AF_MAX + 1):
        if family not in allowed:
            rules.add(act_errno(errno.EAFNOSUPPORT), "socket", (0, SCMP_CMP_EQ, family, 0))
    return rules


def main(argv: list[str]) -> None:
    split = argv.index("--")
    unit, options, command = Path(argv[0]), argv[1:split], argv[split + 1 :]
    filters = [write_execute_filter()]
    if "--only-write-execute" not in options:
        if settings(unit, "MemoryDenyWriteExecute") != ["yes"]:
            filters = []
        families = address_family_filter(unit)
        filters += [families] if families else []
        allowed = allowed_syscalls(unit)
        if allowed is not None:
            (number,) = settings(unit, "SystemCallErrorNumber") or ["EPERM"]
            syscalls = Filter(act_errno(getattr(errno, number)))
            for name in sorted(allowed):
                syscalls.add(SCMP_ACT_ALLOW, name)
            filters.append(syscalls)  # last: it may refuse seccomp() itself
    for rules in filters:
        rules.load()
    os.execvp(command[0], command)  # noqa: S606 - the command line it was given


if __name__ == "__main__":
    main(sys.argv[1:])
