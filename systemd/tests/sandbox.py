#!/usr/bin/env python3
"""Run a command under the seccomp rules of a systemd unit, without systemd.

    sandbox.py [--unit systemd/edge.service] [--strict] [--chroot DIR] -- COMMAND [ARG...]

Applies, as systemd 252 does through seccomp:
  SystemCallFilter=            (allow list, then ~deny lists; groups expanded
                                with `systemd-analyze syscall-filter`)
  SystemCallErrorNumber=       (action for filtered calls; --strict kills the
                                process instead, so any use shows up)
  MemoryDenyWriteExecute=yes   (mmap W+X, mprotect/pkey_mprotect +X, shmat SHM_EXEC)
  RestrictAddressFamilies=     (socket() of other families: EAFNOSUPPORT)
and then execs COMMAND, inside DIR with --chroot (entered before the filters,
which forbid chroot()). Needs python3-seccomp and systemd-analyze.
"""
import argparse
import errno
import os
import subprocess
import sys

import seccomp

PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


def unit_settings(path):
    s = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        s.setdefault(k.strip(), []).append(v.strip())
    return s


def expand(name, seen=None):
    """Syscall names in a systemd group (recursively) or the name itself."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                         check=True, capture_output=True, text=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        calls |= expand(line, seen)
    return calls


def syscall_filter(settings):
    """The allowed syscall names, or None when the unit sets no filter."""
    values = settings.get("SystemCallFilter", [])
    if not values:
        return None
    if values[0].startswith("~"):
        raise SystemExit("sandbox.py: a filter that starts with a deny list is not supported")
    allowed = set()
    for v in values:
        names = set().union(*(expand(x) for x in v.lstrip("~").split()))
        allowed = allowed - names if v.startswith("~") else allowed | names
    return allowed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit", default=os.path.join(os.path.dirname(__file__), "..", "edge.service"))
    ap.add_argument("--strict", action="store_true", help="kill on a filtered call instead of SystemCallErrorNumber=")
    ap.add_argument("--chroot", metavar="DIR", help="run COMMAND inside DIR")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command")
    s = unit_settings(a.unit)
    allowed = syscall_filter(s)  # runs systemd-analyze: before chroot
    if a.chroot:
        os.chroot(a.chroot)
        os.chdir("/")

    if (s.get("MemoryDenyWriteExecute") or ["no"])[-1] in ("yes", "true", "1"):
        f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        eperm = seccomp.ERRNO(errno.EPERM)
        f.add_rule(eperm, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC))
        f.add_rule(eperm, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        f.add_rule(eperm, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        f.add_rule(eperm, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
        f.load()

    fams = " ".join(s.get("RestrictAddressFamilies", [])).split()
    if fams:
        keep = {FAMILIES[x] for x in fams}
        f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for af in range(0, 46):
            if af not in keep:
                f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, af))
        f.load()

    # Last: the allow list does not include seccomp() itself.
    if allowed is not None:
        errname = (s.get("SystemCallErrorNumber") or [None])[-1]
        if a.strict or not errname:
            action = seccomp.KILL_PROCESS
        else:
            action = seccomp.ERRNO(getattr(errno, errname))
        f = seccomp.SyscallFilter(defaction=action)
        for name in sorted(allowed):
            try:
                f.add_rule(seccomp.ALLOW, name)
            except (RuntimeError, ValueError):
                pass  # not a system call on this architecture (e.g. _llseek)
        f.load()

    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
