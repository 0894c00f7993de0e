#!/usr/bin/env bash
# The house style, checked rather than hoped for (docs/style.md 24): every C source and header is
# formatted as .clang-format says, and clang-tidy (.clang-tidy) finds no statement without
# braces and no function over 70 lines.
# Usage: check_style.sh SOURCE-DIR BUILD-DIR (BUILD-DIR holds compile_commands.json)
set -euo pipefail
root=$1
build=$2
cd "$root"
mapfile -t sources < <(git ls-files '*.c' '*.h')
clang-format --dry-run -Werror "${sources[@]}"
echo "style: clang-format: ${#sources[@]} files formatted"
mapfile -t units < <(git ls-files 'common/*.c' 'daemon/*.c' 'gateway/*.c' 'client/*.c')
printf '%s\n' "${units[@]}" | xargs -P 2 -n 8 clang-tidy -p "$build" --quiet 2>/dev/null
echo "style: clang-tidy: ${#units[@]} files, no long function, no statement without braces"
