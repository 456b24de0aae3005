//! aisbf — AI Service Broker Framework: one OpenAI-compatible gateway in front of OpenAI,
//! Anthropic, Google Gemini, Ollama and any OpenAI-compatible endpoint.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod context;
pub mod daemon;
pub mod ingress;
pub mod providers;
pub mod routing;
pub mod secret;
pub mod server;
pub mod state;
