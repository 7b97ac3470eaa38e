#!/usr/bin/env bash
# The hash of what fastwarp._C is built from (csrc/ and setup.py), the same here and on the
# GPU machine: tools/gpu_prebuilt.sh records it, bench/gpu_run.sh compares it.
cd "$(dirname "$0")/.."
find csrc setup.py -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name 'setup.py' \) \
    -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
