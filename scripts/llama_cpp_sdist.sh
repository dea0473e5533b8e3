# Sourced by build_llama_server.sh and tiny_spm_model.sh: the llama.cpp tree they use comes from
# the llama-cpp-python source distribution on the Python package index, pinned by version and
# sha256. `llama_cpp_sdist DIR` downloads it into DIR, checks it and prints its path.
llama_cpp_version=0.3.36
llama_cpp_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
llama_cpp_sdist() {
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$llama_cpp_version" -d "$1" >&2
  local sdist=$1/llama_cpp_python-$llama_cpp_version.tar.gz
  echo "$llama_cpp_sha256  $sdist" | sha256sum --check --quiet >&2
  echo "$sdist"
}
