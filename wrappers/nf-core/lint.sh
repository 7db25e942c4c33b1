#!/usr/bin/env bash
# nf-core's own linter (nf-core/tools: `nf-core modules lint`, `nf-core subworkflows lint`) on these modules and
# subworkflows, offline, with the nf-core/modules schemas vendored in schemas/ (see schemas/SOURCE.md).
#
#   bash wrappers/nf-core/lint.sh            # from anywhere; exit status 1 if the linter reports a failure
#
# The linter expects to run inside a clone of nf-core/modules, reads the schemas from its own clone of that
# repository (a git remote) and calls `nextflow`. This script gives it:
#   - a throw-away modules repository: modules/ copied to modules/nf-core/, subworkflows/ to subworkflows/nf-core/,
#     i.e. where nf-core/modules (and a pipeline) keeps them, so the subworkflow's include paths resolve;
#   - a local git repository holding schemas/ as the nf-core/modules remote (no network);
#   - a stand-in `nextflow` (the checks of modules and subworkflows parse files; they need no Nextflow). So the
#     checks that resolve a container with `nextflow inspect` or look a published package up (docker_tag,
#     singularity_tag, bioconda_version, container_links for a remote image) cannot pass offline.
# nf-core/tools lives in a venv of its own (its pins conflict with omnicell's test environment), created once:
# $NFCORE_VENV, default ${XDG_CACHE_HOME:-~/.cache}/omnicell/nfcore-venv. tests/wrappers/test_nfcore.py runs this.
set -euo pipefail
NFCORE_TOOLS_VERSION="4.2.1"
here="$(cd "$(dirname "$0")" && pwd)"
venv="${NFCORE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/omnicell/nfcore-venv}"
if ! "$venv/bin/nf-core" --version 2>/dev/null | grep -q "version $NFCORE_TOOLS_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "nf-core==$NFCORE_TOOLS_VERSION"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# the linter's config, cache and clones stay in the throw-away folder
export XDG_CONFIG_HOME="$work/config" XDG_CACHE_HOME="$work/cache" HIDE_PROGRESS=1 NF_CORE_LINT_OUTPUT=1
# wide enough that no result line wraps (the test reads them)
export COLUMNS=400

mkdir -p "$work/bin"
cat > "$work/bin/nextflow" <<'NEXTFLOW'
#!/bin/sh
case "$1" in
    -version) echo "nextflow version 25.04.0" ;;
    config) echo "{}" ;;
esac
exit 0
NEXTFLOW
chmod +x "$work/bin/nextflow"
export PATH="$work/bin:$PATH"

commit() { git -C "$1" add -A && git -C "$1" -c user.email=lint@localhost -c user.name=lint commit -qm "$2"; }
nfcore_yml='repository_type: modules\norg_path: nf-core\n'

# the nf-core/modules remote, where the linter finds the schemas
remote="$XDG_CONFIG_HOME/nfcore/nf-core/modules"
mkdir -p "$remote"
cp -r "$here/schemas/modules" "$here/schemas/subworkflows" "$remote/"
printf "$nfcore_yml" > "$remote/.nf-core.yml"
git -C "$remote" init -q -b master && commit "$remote" schemas
git -C "$remote" remote add origin "$remote"
git -C "$remote" fetch -q origin && git -C "$remote" branch -q -u origin/master master

# the modules and subworkflows, laid out as in nf-core/modules
repo="$work/repo"
mkdir -p "$repo/modules/nf-core" "$repo/subworkflows/nf-core"
cp -r "$here/modules/." "$repo/modules/nf-core/"
cp -r "$here/subworkflows/." "$repo/subworkflows/nf-core/"
printf "$nfcore_yml" > "$repo/.nf-core.yml"
git -C "$repo" init -q && commit "$repo" lint

cd "$repo"
status=0
"$venv/bin/nf-core" modules lint --all --plain-text || status=1
"$venv/bin/nf-core" subworkflows lint --all --plain-text || status=1
exit $status
