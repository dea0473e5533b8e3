//! The end-to-end tests on the real SmolLM2-135M in one binary, for the GPU (built only with
//! the `cuda` feature): each of these files is also a test binary of its own, but every test
//! binary carries all of mistral.rs and its CUDA kernels, and scripts/gpu/ copies them to a GPU
//! machine in pieces of limited size; one binary instead of five is 18 MiB less to carry. Each
//! module loads its own shared backend (its own `common`), as its binary would.
//!
//! `PONDER_TEST_DEVICE=cuda:0 cargo test --release --features cuda --test gpu_e2e`

#[path = "beam_search.rs"]
mod beam_search;
#[path = "best_of_n.rs"]
mod best_of_n;
#[path = "budget_forcing.rs"]
mod budget_forcing;
#[path = "mistralrs_backend.rs"]
mod mistralrs_backend;
#[path = "router.rs"]
mod router;
