#!/bin/bash
# Start a single-node Slurm (munged, slurmctld, slurmd) as root, without systemd, in the
# folder $1 (created). Writes $1/env (export SLURM_CONF=...) and $1/pids. Stop with
# slurm_down.sh $1. Facts this follows: ../shared/PLATFORM.md, "A single-node Slurm".
set -euo pipefail
dir=$(realpath -m "$1")
mkdir -p "$dir"/{munge,state,spool,log,run}
chmod 755 "$dir" "$dir/munge"
key="$dir/munge/munge.key"
dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
chmod 600 "$key"
sock="$dir/munge/munge.socket"
munged --key-file="$key" --socket="$sock" --pid-file="$dir/run/munged.pid" \
       --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed" --force
cpus=$(nproc)
mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
cat > "$dir/slurm.conf" <<CONF
ClusterName=stresstest-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ReturnToService=2
MaxArraySize=1001
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
echo "export SLURM_CONF=$SLURM_CONF" > "$dir/env"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "slurm up: $SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm did not come up; logs in $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
