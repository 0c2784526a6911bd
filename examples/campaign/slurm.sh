#!/bin/bash
# A Rehearsal campaign as a Slurm job array: 16 tasks, each running one shard of 100,000
# seeds on every core Slurm gives it. Submit with `sbatch examples/campaign/slurm.sh`,
# then merge what the tasks wrote:
#   rehearsal campaign merge campaign-*.jsonl
# Every task must run the same build of `rehearsal` (the lines carry its commit) and the
# same configuration (they carry its hash): a merge refuses lines of another campaign.
#SBATCH --job-name=rehearsal-campaign
#SBATCH --array=0-15
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=campaign-%a.log

set -euo pipefail
# `--shard auto` reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
# SLURM_ARRAY_TASK_COUNT. A shard with a failing seed exits 1; the merge reports it.
rehearsal sim --protocol pbft --swarm --seeds 100000 \
  --jobs "${SLURM_CPUS_PER_TASK:-1}" --shard auto \
  > "campaign-${SLURM_ARRAY_TASK_ID}.jsonl" || [ $? -eq 1 ]
