#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sstp_ppp::fuzzing::dhcp_inform(data));
