#!/bin/bash
# The driver of a dask-enrich run on SLURM: a small allocation that runs the Dask scheduler and the
# dask-enrich client; start_cluster.py submits the workers as separate SLURM jobs (jobqueue.yaml)
# and cancels them at the end. Submit from the repository root (or set DASK_ENRICH_DEPLOY):
#   sbatch deploy/slurm/submit.sh
# Inputs, the genomic cache and the output must be on a filesystem every node sees (e.g. $SCRATCH).
#SBATCH --job-name=dask-enrich
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=dask-enrich-%j.log
set -euo pipefail

DEPLOY=${DASK_ENRICH_DEPLOY:-$(pwd)/deploy/slurm}
DATA=${DASK_ENRICH_DATA:-$SCRATCH/dask-enrich}
JOBS=${DASK_ENRICH_JOBS:-8}

source "${DASK_ENRICH_VENV:-$HOME/venvs/dask-enrich}/bin/activate"

# The genomic cache, once (reused when the genome and annotation are unchanged).
dask-enrich build-cache --genome "$DATA/genome.fa.gz" --annotation "$DATA/annotation.gtf.gz" \
    --out "$DATA/cache"

# A cluster of $JOBS worker jobs, then `dask-enrich run --scheduler <its address>` with these
# options. --resume: resubmitting this script after a failure or a timeout continues the run.
exec python "$DEPLOY/start_cluster.py" --config "$DEPLOY/jobqueue.yaml" --jobs "$JOBS" \
    --scheduler-file "$DATA/scheduler.json" -- \
    --positions "$DATA/positions.parquet" --manifest "$DATA/model" --cache "$DATA/cache" \
    --out "$DATA/enriched" --resume
