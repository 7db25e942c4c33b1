#!/usr/bin/env bash
# Run every <test> of the Galaxy tools in this folder (the data manager's included) inside a real Galaxy server:
# Galaxy from PyPI in its own cached venv, API only, on 127.0.0.1, driven by planemo's external_galaxy engine.
# The tools' requirement `omnicell` (version @TOOL_VERSION@) resolves to THIS working tree's omnicell, so a
# wrapper or CLI change that breaks in Galaxy fails here. Offline apart from PyPI (first run only).
#
#   bash wrappers/galaxy/test_in_galaxy.sh                 # all tools (~5 min install once, 15-25 min on 2 cores)
#   PLANEMO_ARGS="--test_index 0" bash wrappers/galaxy/test_in_galaxy.sh wrappers/galaxy/omnicell_embed.xml
#   bash wrappers/galaxy/test_in_galaxy.sh --install-only  # only build the cached venv
#
# Environment (all optional):
#   GALAXY_VERSION   Galaxy release from PyPI (default 26.1.2)
#   GALAXY_VENV      cached venv with Galaxy + planemo (default ~/.cache/omnicell-galaxy/venv-$GALAXY_VERSION)
#   WORK             scratch folder: server state, job folders, reports (default ${TMPDIR:-/tmp}/omnicell-galaxy-test)
#   OMNICELL_PYTHON  a Python with omnicell's dependencies installed (default: python3 on PATH); it runs
#                    src/omnicell of this working tree, whatever omnicell it has installed itself
#   PORT             Galaxy's port on 127.0.0.1 (default 8089)
#   PLANEMO_ARGS     extra `planemo test` arguments
# Arguments: tool files to test (default: every tool of the suite). Exit status: planemo's.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
GALAXY_VERSION=${GALAXY_VERSION:-26.1.2}
GALAXY_VENV=${GALAXY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/omnicell-galaxy/venv-$GALAXY_VERSION}
WORK=${WORK:-${TMPDIR:-/tmp}/omnicell-galaxy-test}
# the interpreter itself, not a shim or venv link that depends on the caller's environment (jobs get their own HOME)
OMNICELL_PYTHON=$("${OMNICELL_PYTHON:-python3}" -c 'import sys; print(sys.executable)')
PORT=${PORT:-8089}
URL=http://127.0.0.1:$PORT
ADMIN_KEY=omnicell-test-admin-key-0123456789
TOOLS=$WORK/tools/omnicell   # the copy Galaxy loads: planemo reads each tool's tests from the server's copy
RUN=$WORK/run
CONF=$WORK/conf

# 1. Galaxy + planemo in one venv, built once. The `galaxy` metapackage pins every dependency exactly; one pin of
#    26.1.2 (certifi==2026.10.19) is not on PyPI (only 2026.10.19.post1), so the pins are read from the wheel's
#    metadata with that one relaxed, then the metapackage is installed with --no-deps; planemo is installed under
#    Galaxy's pins as constraints, so it cannot move them (it would upgrade packaging).
if [ ! -x "$GALAXY_VENV/bin/planemo" ] || [ ! -x "$GALAXY_VENV/bin/galaxy-web" ]; then
    echo "Installing Galaxy $GALAXY_VERSION and planemo into $GALAXY_VENV"
    [ -x "$GALAXY_VENV/bin/python" ] || python3 -m venv "$GALAXY_VENV"
    "$GALAXY_VENV/bin/pip" install -q --upgrade pip wheel
    pins=$GALAXY_VENV/galaxy_pins
    rm -rf "$pins" && mkdir -p "$pins"
    "$GALAXY_VENV/bin/pip" download -q --no-deps "galaxy==$GALAXY_VERSION" -d "$pins"
    unzip -p "$pins/galaxy-$GALAXY_VERSION-py3-none-any.whl" '*/METADATA' \
        | sed -n 's/^Requires-Dist: //p' \
        | sed -E 's/^certifi==([0-9.]+)$/certifi>=\1/' > "$pins/requirements.txt"
    "$GALAXY_VENV/bin/pip" install -q -r "$pins/requirements.txt"
    "$GALAXY_VENV/bin/pip" install -q --no-deps "galaxy==$GALAXY_VERSION"
    grep -v 'extra ==' "$pins/requirements.txt" > "$pins/constraints.txt"  # constraints take no extras
    "$GALAXY_VENV/bin/pip" install -q planemo -c "$pins/constraints.txt"
fi
[ "${1:-}" != "--install-only" ] || exit 0

# 2. The requirement. Galaxy's galaxy_packages resolver finds <tool_dependency_dir>/<name>/<version>/bin and puts
#    it on the job's PATH, as it would for an installed package: there, `omnicell` runs this working tree's source.
version=$(PYTHONPATH="$REPO/src" "$OMNICELL_PYTHON" -c 'import omnicell; print(omnicell.__version__)')
tool_version=$(sed -n 's|.*<token name="@TOOL_VERSION@">\([^<]*\)</token>.*|\1|p' "$HERE/macros.xml")
[ "$version" = "$tool_version" ] || { echo "macros.xml requires omnicell $tool_version, the tree is $version"; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK/deps/omnicell/$version/bin" "$RUN/data" "$CONF" "$(dirname "$TOOLS")"
cat > "$WORK/deps/omnicell/$version/bin/omnicell" <<EOF
#!/usr/bin/env bash
export PYTHONPATH="$REPO/src\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$OMNICELL_PYTHON" -m omnicell "\$@"
EOF
chmod +x "$WORK/deps/omnicell/$version/bin/omnicell"
"$WORK/deps/omnicell/$version/bin/omnicell" --version >/dev/null

# 3. A fresh copy of the wrappers on every run, the tool panel, the data manager and galaxy.yml.
cp -r "$HERE" "$TOOLS"
if [ $# -gt 0 ]; then
    targets=()
    for tool in "$@"; do targets+=("$TOOLS/$(realpath --relative-to="$HERE" "$tool")"); done
else
    targets=("$TOOLS"/data_manager/*.xml "$TOOLS")
fi
{
    echo '<?xml version="1.0"?>'
    echo '<toolbox monitor="false">'
    echo '    <section id="omnicell" name="OmniCell">'
    for xml in "$TOOLS"/omnicell_*.xml; do echo "        <tool file=\"$xml\"/>"; done
    echo '    </section>'
    echo '</toolbox>'
} > "$CONF/tool_conf.xml"
# tool_file paths in data_manager_conf.xml are relative to its tool_path
sed "s|<data_managers>|<data_managers tool_path=\"$TOOLS\">|" "$TOOLS/data_manager_conf.xml" > "$CONF/data_manager_conf.xml"
cat > "$CONF/galaxy.yml" <<EOF
galaxy:
  data_dir: $RUN/data
  database_connection: sqlite:///$RUN/data/universe.sqlite?isolation_level=IMMEDIATE
  database_auto_migrate: true
  file_path: $RUN/data/objects
  new_file_path: $RUN/data/tmp
  job_working_directory: $RUN/data/jobs
  tool_data_path: $RUN/data/tool-data
  tool_config_file: $CONF/tool_conf.xml
  data_manager_config_file: $CONF/data_manager_conf.xml
  # the tests' data table: \${__HERE__}/test-data/omnicell_models.loc (omnicell-tiny, bundled)
  tool_data_table_config_path: $TOOLS/tool_data_table_conf.xml.test
  galaxy_infrastructure_url: $URL
  tool_dependency_dir: $WORK/deps
  dependency_resolvers:
    - type: galaxy_packages
  conda_auto_init: false
  conda_auto_install: false
  # offline: no container resolution (else Galaxy downloads involucro at startup)
  enable_mulled_containers: false
  involucro_auto_init: false
  admin_users: admin@example.org
  bootstrap_admin_api_key: $ADMIN_KEY
  id_secret: omnicell-galaxy-test-id-secret-not-for-production
  allow_path_paste: true
  allow_local_account_creation: true
  watch_tools: 'false'
  cleanup_job: onsuccess
  job_config:
    runners:
      local:
        load: galaxy.jobs.runners.local:LocalJobRunner
        workers: 2
    execution:
      default: local_omnicell
      environments:
        local_omnicell:
          runner: local
          env:
            - name: OMP_NUM_THREADS
              value: "1"
            - name: MPLBACKEND
              value: agg
EOF

# 4. Start Galaxy (one uvicorn process that also runs the jobs) and wait for its API.
"$GALAXY_VENV/bin/galaxy-web" -c "$CONF/galaxy.yml" -b "127.0.0.1:$PORT" > "$RUN/galaxy.log" 2>&1 &
GALAXY_PID=$!
trap 'kill "$GALAXY_PID" 2>/dev/null; wait "$GALAXY_PID" 2>/dev/null || true' EXIT
start=$(date +%s)
until curl -sf -m 5 "$URL/api/version" >/dev/null; do
    kill -0 "$GALAXY_PID" 2>/dev/null || { echo "Galaxy died:"; tail -50 "$RUN/galaxy.log"; exit 1; }
    [ $(($(date +%s) - start)) -lt 900 ] || { echo "Galaxy did not start in 900 s"; exit 1; }
    sleep 5
done
echo "Galaxy $(curl -s "$URL/api/version") up after $(($(date +%s) - start)) s"

# 5. A user that is an admin (planemo needs a user key; the bootstrap key owns no histories; data managers are
#    admin-only).
uid=$(curl -sf -H "x-api-key: $ADMIN_KEY" -H 'Content-Type: application/json' -X POST "$URL/api/users" \
    -d '{"username":"admin","email":"admin@example.org","password":"omnicell-admin-pw"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
USER_KEY=$(curl -sf -H "x-api-key: $ADMIN_KEY" -X POST "$URL/api/users/$uid/api_key" | tr -d '"')

# 6. The tools' own tests.
set +e
# shellcheck disable=SC2086
"$GALAXY_VENV/bin/planemo" test --engine external_galaxy --galaxy_url "$URL" \
    --galaxy_admin_key "$ADMIN_KEY" --galaxy_user_key "$USER_KEY" --test_timeout 900 \
    --test_output_json "$RUN/tool_test_output.json" --test_output "$RUN/tool_test_output.html" \
    --test_output_xunit "$RUN/tool_test_output.xunit.xml" ${PLANEMO_ARGS:-} "${targets[@]}"
rc=$?
set -e
echo "planemo exit status $rc; reports: $RUN/tool_test_output.{json,html,xunit.xml}; server log: $RUN/galaxy.log"
exit $rc
