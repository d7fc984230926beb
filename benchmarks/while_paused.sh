#!/usr/bin/env bash
# Run a timing command on an idle machine while long training runs are paused.
#
#   benchmarks/while_paused.sh 'bench_mkgc.py|snagkg train' .venv/bin/python benchmarks/bench_eval.py
#
# Every process whose command line matches the pgrep pattern (first argument) is stopped with
# SIGSTOP, the load is given 20 s to settle, the command runs, and the processes are continued
# with SIGCONT, also when the command fails or is interrupted.
set -u
pattern=$1; shift
pids=""
for p in $(pgrep -f -- "$pattern"); do  # not this script, nor the shells it starts
    grep -qa while_paused "/proc/$p/cmdline" 2>/dev/null || pids="$pids$p "
done
resume() { [ -n "$pids" ] && kill -CONT $pids 2>/dev/null; echo "continued: ${pids:-none}" >&2; }
trap resume EXIT
[ -n "$pids" ] && kill -STOP $pids
echo "paused: ${pids:-none}; $(uptime)" >&2
sleep "${SETTLE_SECONDS:-20}"
"$@"
