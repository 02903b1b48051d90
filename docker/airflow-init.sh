#!/usr/bin/env bash
# One-shot preparation of the compose deployment, run by the `airflow-init` service (as root,
# through the image's entrypoint, which first waits for Airflow's metadata database).
#
# In order: create the shared folders, migrate Airflow's metadata database, apply fnd's
# migrations to fnd's own database, write the UI login, and hand the shared folders to the
# Airflow user. Every step is idempotent, so `docker compose up` may run it on every start.
#
# Reads: AIRFLOW_HOME, AIRFLOW_UID, AIRFLOW_ADMIN_USER, AIRFLOW_ADMIN_PASSWORD,
# AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE, FND_HOME, FND_LANDING_DIR, FND_STORE,
# FND_DATA_DOCS_DIR (all set by docker-compose.yaml).
set -euo pipefail

: "${AIRFLOW_HOME:=/opt/airflow}"
: "${FND_HOME:=/opt/fnd}"
: "${AIRFLOW_ADMIN_USER:=admin}"
if [[ -z "${AIRFLOW_ADMIN_PASSWORD:-}" || "${AIRFLOW_ADMIN_PASSWORD}" == "admin" ]]; then
    echo "ERROR: set AIRFLOW_ADMIN_PASSWORD (not empty, not 'admin'): ./docker/make-env.sh > .env" >&2
    exit 1
fi
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:=${AIRFLOW_HOME}/config/simple_auth_manager_passwords.json}"
export AIRFLOW_ADMIN_USER AIRFLOW_ADMIN_PASSWORD AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE

if [[ -z "${AIRFLOW_UID:-}" ]]; then
    echo "WARNING: AIRFLOW_UID not set; shared folders go to uid 50000 (the image's airflow user)."
    AIRFLOW_UID=50000
fi

# Local paths only: a gs:// landing zone or store has no folder to create here.
config_dir="$(dirname "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}")"
local_dirs=("${AIRFLOW_HOME}/logs" "${config_dir}" "${FND_HOME}")
for uri in "${FND_LANDING_DIR:-${FND_HOME}/landing}" "${FND_STORE:-${FND_HOME}/store}" \
    "${FND_DATA_DOCS_DIR:-${FND_HOME}/data_docs}"; do
    uri="${uri#file://}"
    if [[ "${uri}" != *://* ]]; then
        local_dirs+=("${uri}")
    fi
done
echo "Creating shared folders: ${local_dirs[*]}"
mkdir -p "${local_dirs[@]}"

echo "Migrating Airflow's metadata database"
airflow db migrate

echo "Applying fnd's migrations (fnd db upgrade)"
if ! fnd db upgrade; then
    echo "ERROR: fnd db upgrade failed. If fnd's database does not exist, the postgres volume" >&2
    echo "predates docker/postgres-init (init scripts run only on an empty volume): create the" >&2
    echo "database by hand or start over with 'docker compose down --volumes'." >&2
    exit 1
fi

# SimpleAuthManager reads {user: password} from this file (and would print a random password
# for any configured user missing from it), so the login is the one set in the environment.
echo "Writing the UI login for user '${AIRFLOW_ADMIN_USER}'"
python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
user = os.environ["AIRFLOW_ADMIN_USER"]
with open(path, "w", encoding="utf-8") as f:
    json.dump({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, f)
    f.write("\n")
PY
chmod 0660 "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"

# Recursive only where the top folder is not the Airflow user's yet (first start, or a changed
# AIRFLOW_UID): an image store of millions of files is not walked on every start.
echo "Handing shared folders to ${AIRFLOW_UID}:0"
for path in "${local_dirs[@]}" "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"; do
    if [[ "$(stat -c %u "${path}")" != "${AIRFLOW_UID}" ]]; then
        chown -R "${AIRFLOW_UID}:0" "${path}"
    fi
done

echo "Ready: Airflow $(airflow version), fnd migrations applied."
