//! Scorers for ponder: process and outcome reward models, LLM judges, votes, and the code
//! sandbox. Each implements [`ponder_engine::Scorer`].
