#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sstp_proto::fuzzing::client_hello(data));
