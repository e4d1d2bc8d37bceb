#!/usr/bin/env bash
# Bazel workspace status: the git SHA and dirty flag stamped into workflow binaries.
# Prints nothing outside a git checkout: a build never invents a SHA.
set -u
sha=$(git rev-parse HEAD 2>/dev/null) || exit 0
echo "STABLE_GIT_COMMIT ${sha}"
# Dirty = tracked changes or untracked files that are not ignored.
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  echo "STABLE_GIT_DIRTY true"
else
  echo "STABLE_GIT_DIRTY false"
fi
