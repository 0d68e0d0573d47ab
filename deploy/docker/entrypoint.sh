#!/bin/sh
# Entrypoint of the ml_assets image: choose the Dagster instance for this environment (ENV, or
# DAGSTER_INSTANCE_CONFIG) and write it to $DAGSTER_HOME/dagster.yaml, then run the command.
# A dagster.yaml already there (the Helm chart mounts its own) is kept. A missing required
# variable stops start-up here, with a message naming it.
set -eu
python -m ml_assets.instance init
exec "$@"
