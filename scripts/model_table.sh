# Sourced by the measurement scripts: `model_table` prints the [model] table for $model, a
# built-in name or GGUF path (mistral.rs in process) or an http(s):// URL of an
# OpenAI-compatible server. NATIVE_N=false makes a server get single-choice requests
# (llama-server starts an n=8 request only when 8 slots are free, so it waits behind other
# clients' requests).
model_table() {
  case "$model" in
    http://*|https://*)
      printf '[model]\nbackend = "openai"\nbase_url = "%s"\nmodel = "policy"\n' "$model"
      if [ -n "${NATIVE_N:-}" ]; then printf 'native_n = %s\n' "$NATIVE_N"; fi ;;
    *) printf '[model]\nsource = "%s"\n' "$model" ;;
  esac
}

# `ponder_run LOG ARGS...` runs `$ponder run ARGS...` with its output in LOG. A run where some
# problems failed (their lines carry the error; the tables count the others) is said, with the
# log's end, and the script goes on; any other failure ends the script, showing the log's end.
ponder_run() {
  local log=$1 status=0
  shift
  "$ponder" run "$@" > "$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "ponder run failed (status $status); the end of $log:" >&2
    tail -n 15 "$log" >&2
    if ! grep -q "failed; their lines carry the error" "$log"; then
      exit "$status"
    fi
    echo "(going on: the tables leave the failed problems out; rerun the script to retry them)" >&2
  fi
}
