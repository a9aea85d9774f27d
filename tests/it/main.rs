//! One integration-test binary, with modules by theme.

mod analysis;
mod cli;
mod config;
mod crash;
mod decode_props;
mod exactly_once;
mod gateway;
mod layers;
mod links;
mod mock;
mod model;
mod operators;
mod processes;
mod support;
mod watermark_model;
