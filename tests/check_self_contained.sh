#!/usr/bin/env bash
# Fails when a tracked file refers to a path outside the repository: a clone on a user's
# machine has nothing beside it, so the build, the tests and the docs must not reach out.
# Looks for "../" followed by a name that is not inside the repository (resolved from the
# file's own folder), and for the steering folder's name in any form.
set -euo pipefail
root=${1:-$(git rev-parse --show-toplevel)}
cd "$root"
status=0
# The word is split so that this script does not match itself.
steering="sha""red"
if git grep -n -I -E "\\.\\./${steering}(/|\\b)|/work/${steering}" -- . ; then
    echo "repo_self_contained: the lines above refer to a folder outside the repository" >&2
    status=1
fi
# Relative paths that climb above the repository root.
while IFS=: read -r file line text; do
    dir=$(dirname "$file")
    for path in $(grep -oE '(\.\./)+[A-Za-z0-9_.-]+' <<<"$text" || true); do
        resolved=$(realpath -m "$dir/$path")
        case "$resolved" in
            "$PWD"/*) ;;
            *) echo "$file:$line: $path leaves the repository" >&2; status=1 ;;
        esac
    done
done < <(git grep -n -I -E '(\.\./){1,}[A-Za-z0-9_.-]+' -- . ':!*.json' ':!tests/check_self_contained.sh' || true)
[ "$status" -eq 0 ] && echo "repo_self_contained: no tracked file refers outside the repository"
exit "$status"
