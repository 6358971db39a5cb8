#!/usr/bin/env python3
"""Where a `salvo bench` run spends its CPU, per thread (issue 19 item 2).

  perf record -e cpu-clock -F 2000 -o salvo.data -- build/bin/salvo bench --dkim none \
      --recipients 100000 --json
  bench/perf_threads.py salvo.data [TOP]

Only the sending phase counts: samples from the first sample of the first
busy engine thread other than the main one (the shards start when the run
does; before that the main thread generates and loads the campaign). Prints
each thread's share of all samples, then for each thread with 5% or more its
DSOs and its TOP (default 25) leaf symbols. In `salvo bench` the main thread
is the engine's feeder (queue leases and completions), the other busy threads
of that process are the shards, and the sink is a second process.
Works with and without -g (the leaf frame is used).
"""
import collections
import re
import subprocess
import sys


def samples(data):
    out = subprocess.run(['perf', 'script', '-i', data, '-F', 'pid,tid,time,ip,sym,dso'],
                         capture_output=True, text=True, check=True).stdout
    head = re.compile(r'\s*(\d+)/(\d+)\s+([\d.]+):(.*)$')
    frame = re.compile(r'\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$')
    pending = None
    for line in out.splitlines():
        m = head.match(line)
        if m:
            pending = None
            f = frame.match(m.group(4))
            key = (int(m.group(1)), int(m.group(2)), float(m.group(3)))
            if f:  # no call chains: the frame is on the same line
                yield key + (f.group(1), f.group(2))
            else:
                pending = key
            continue
        if pending is not None:
            f = frame.match(line)
            if f:
                yield pending + (f.group(1), f.group(2))
                pending = None


def main():
    if len(sys.argv) < 2:
        sys.exit('usage: perf_threads.py PERF_DATA [TOP]')
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    rows = list(samples(sys.argv[1]))
    if not rows:
        sys.exit('no samples in ' + sys.argv[1])
    first = {}
    for p, t, ts, _, _ in rows:
        first.setdefault(t, ts)
    per_thread = collections.Counter((p, t) for p, t, _, _, _ in rows)
    main_pid = rows[0][0]
    busy = [first[t] for (p, t), c in per_thread.items()
            if p == main_pid and t != p and c > len(rows) // 20]
    start = min(busy) if busy else rows[0][2]
    sel = [r for r in rows if r[2] >= start]
    total = collections.Counter((r[0], r[1]) for r in sel)
    n = sum(total.values())
    print(f'sending phase: {n} samples')
    for (p, t), c in total.most_common(10):
        role = 'main (feeder)' if t == main_pid else ('engine' if p == main_pid else 'other process')
        print(f'  {p}/{t} {role}: {100 * c / n:.1f}%')
    for (p, t), c in total.most_common():
        if c < n * 0.05:
            break
        print(f'== {p}/{t} ({100 * c / n:.1f}% of all samples)')
        dso = collections.Counter(r[4].split('/')[-1] for r in sel if r[1] == t)
        print('   dso: ' + ', '.join(f'{k} {100 * v / c:.1f}%' for k, v in dso.most_common(5)))
        sym = collections.Counter(re.sub(r'\+0x[0-9a-f]+$', '', r[3])[:100] for r in sel if r[1] == t)
        for k, v in sym.most_common(top):
            print(f'   {100 * v / c:5.1f}%  {k}')


if __name__ == '__main__':
    main()
