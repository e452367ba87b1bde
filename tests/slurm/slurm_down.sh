#!/bin/bash
# Stop the daemons slurm_up.sh started in $1, by pid.
dir=$(realpath -m "$1")
for name in slurmd slurmctld munged; do
  f="$dir/run/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
done
