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
