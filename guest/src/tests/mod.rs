//! Native tests of the plain modules, driven through an in-memory
//! capability (no component, no host).

mod api_tests;
mod fake;
mod output_tests;
mod render_tests;
mod request_tests;
mod signal_run_ref_tests;
mod stream_tests;
