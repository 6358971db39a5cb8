#!/usr/bin/python3
"""Runs a command under a Docker-format seccomp profile, as a container would.

Usage: seccomp_confine.py PROFILE.json [--drop SYSCALL]... -- COMMAND [ARGS...]

Loads the profile's allow-list with libseccomp (python3-seccomp): every
listed system call is allowed, everything else fails with the profile's
errno, then execs COMMAND. --drop removes a system call from the allow-list
(to show what happens when a profile lacks it).
"""
import json
import os
import sys

import seccomp


def main():
    args = sys.argv[1:]
    if len(args) < 3 or "--" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    sep = args.index("--")
    profile_path, opts, command = args[0], args[1:sep], args[sep + 1:]
    drop = {opts[i + 1] for i in range(len(opts)) if opts[i] == "--drop"}
    profile = json.load(open(profile_path))
    errno = profile.get("defaultErrnoRet", 1)
    if profile.get("defaultAction") != "SCMP_ACT_ERRNO":
        print("profile: expected defaultAction SCMP_ACT_ERRNO", file=sys.stderr)
        return 2
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno))
    for rule in profile["syscalls"]:
        if rule["action"] != "SCMP_ACT_ALLOW":
            continue
        for name in rule["names"]:
            if name in drop:
                continue
            try:
                f.add_rule(seccomp.ALLOW, name)
            except (RuntimeError, ValueError):
                pass  # not a system call on this architecture
    f.load()
    os.execv(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
