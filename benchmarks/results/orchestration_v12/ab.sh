# The quickstart's first two trials, before (6b65315) and after (AFTER, default 2a3702c) the first trials waited
# for their warm-ups; alternating, ROUNDS rounds. Run from the repository root, nothing else
# running; it puts the two versions of search/runner.py and search/worker.py in the checkout in
# turn and restores the checkout's own at the end. Each line: when each trial's worker began
# (seconds from the command's start), its pid, and whether torch and the trainer were loaded.
set -e
ROUNDS=${ROUNDS:-6}
repo=$(pwd); work=$(mktemp -d); cp -r studies "$work/"
trap 'git -C "$repo" checkout -q HEAD -- search/runner.py search/worker.py' EXIT
AFTER=${AFTER:-2a3702c}
for i in $(seq "$ROUNDS"); do for commit in 6b65315 "$AFTER"; do
  git -C "$repo" show "$commit:search/runner.py" > "$repo/search/runner.py"
  git -C "$repo" show "$commit:search/worker.py" > "$repo/search/worker.py"
  rm -rf "$work/studies/runs"
  s=$(date +%s.%N)
  (cd "$work" && scaletune run studies/quickstart.yaml --n-trials 2 > /dev/null 2>&1)
  e=$(date +%s.%N)
  (cd "$work" && python - "$commit" "$s" "$e" <<'PY'
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
commit, s, e = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
study = optuna.load_study(study_name="quickstart", storage="sqlite:///studies/runs/studies.db")
said = [f"trial {t.number} at {t.user_attrs['worker_started_at'] - s:.2f} s pid "
        f"{t.user_attrs['worker_pid']} warm {t.user_attrs['worker_warm']}" for t in study.trials]
print(commit, " | ".join(said), f"| wall {e - s:.2f} s", flush=True)
PY
  )
done; done
