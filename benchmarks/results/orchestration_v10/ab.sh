#!/usr/bin/env bash
# search/cluster.py before the change (5883e78) and after it (a67c703), swapped into the
# checkout in turn, four alternating rounds of init_minimal.py; the checkout's own file is put back.
cd "$(dirname "$0")"
root=$(git rev-parse --show-toplevel)
cp "$root/search/cluster.py" /tmp/cluster_now.py
git show 5883e78:search/cluster.py > /tmp/cluster_before.py
git show a67c703:search/cluster.py > /tmp/cluster_after.py
for i in 1 2 3 4; do for m in before after; do
  cp /tmp/cluster_$m.py "$root/search/cluster.py"
  c0=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat)
  python init_minimal.py $m 2>&1 | tail -1
  c1=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat)
  echo "  machine cpu $(( (c1-c0)*10 )) ms; agent errors: $(grep -c 'ERROR' /tmp/ray/session_latest/logs/dashboard_agent.log)"
done; done
cp /tmp/cluster_now.py "$root/search/cluster.py"
