#!/usr/bin/env python3
"""The README stays true: every subcommand and every flag that `salvo ... --help`
prints is documented in README.md, and every configuration key of
deploy/salvo.example.toml appears in the README's configuration section."""
import re
import subprocess
import sys

salvo, readme_path = sys.argv[1], sys.argv[2]
readme = open(readme_path, encoding="utf-8").read()
missing = []


def help_text(words):
    return subprocess.run([salvo, *words, "--help"], capture_output=True, text=True, timeout=30).stdout


def walk(words):
    text = help_text(words)
    if words and f"salvo {' '.join(words)}" not in readme:
        missing.append(f"subcommand 'salvo {' '.join(words)}'")
    for flag in sorted(set(re.findall(r"^\s+(?:-\w,)?(--[a-z0-9-]+)", text, re.M))):
        if flag in ("--help", "--version"):
            continue
        if flag not in readme:
            missing.append(f"flag {flag} of 'salvo {' '.join(words)}'")
    in_subs = False
    for line in text.splitlines():
        if line.startswith("Subcommands:"):
            in_subs = True
            continue
        if in_subs:
            m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\s", line)
            if m:
                walk(words + [m.group(1)])
            elif line.strip() and not line.startswith(" "):
                in_subs = False


walk([])

# Every key of the documented example configuration appears in the README.
import pathlib
import tomllib

example = pathlib.Path(readme_path).parent / "deploy" / "salvo.example.toml"
def keys(table, prefix=""):
    for k, v in table.items():
        if isinstance(v, dict):
            yield from keys(v, prefix + k + ".")
        else:
            yield prefix + k
for key in keys(tomllib.loads(example.read_text())):
    if f"`{key}`" not in readme:
        missing.append(f"configuration key {key}")
if missing:
    print("README.md does not document:")
    for m in missing:
        print("  " + m)
    sys.exit(1)
print("README documents every subcommand and flag")
