#!/usr/bin/env bash
# Runs every test. pytest exits 5 when it collected nothing: that is a failure here too,
# but reported plainly rather than as a mystery exit code.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q -rs "$@"
rc=$?
if [ "$rc" = 5 ]; then
	echo "tests: pytest collected no tests" >&2
fi
exit "$rc"
