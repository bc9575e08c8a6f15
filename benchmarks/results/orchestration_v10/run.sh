#!/usr/bin/env bash
# Five alternating rounds of init_minimal.py, full and minimal, from the repository's root.
cd "$(dirname "$0")"
cpu() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat; }
for i in 1 2 3 4 5; do
    for mode in full minimal; do
        c0=$(cpu)
        python init_minimal.py "$mode" 2>/dev/null
        echo "  machine cpu $(( ($(cpu) - c0) * 10 )) ms"
    done
done
