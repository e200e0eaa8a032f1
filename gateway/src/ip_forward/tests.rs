use super::*;
use sstp_e2e::thread_netns::in_new_netns;

/// A file standing in for the sysctl, holding `content`.
fn sysctl_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sstp-ip-forward-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ip_forward");
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn off_is_turned_on_and_read_back() {
    let path = sysctl_file("off", "0\n");
    assert!(!is_enabled(&path).unwrap());
    assert_eq!(ensure(&path).unwrap(), Forwarding::TurnedOn);
    assert!(is_enabled(&path).unwrap());
}

#[test]
fn on_is_left_alone() {
    let path = sysctl_file("on", "1\n");
    assert_eq!(ensure(&path).unwrap(), Forwarding::AlreadyOn);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
}

#[test]
fn a_missing_or_strange_file_is_an_error_naming_it() {
    let missing = std::env::temp_dir().join("sstp-ip-forward-missing/ip_forward");
    let err = ensure(&missing).unwrap_err();
    assert!(matches!(err, IpForwardError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("sstp-ip-forward-missing"), "{err}");
    let strange = sysctl_file("strange", "yes\n");
    let err = is_enabled(&strange).unwrap_err();
    assert!(err.to_string().contains("\"yes\""), "{err}");
}

#[test]
fn the_real_sysctl_of_a_new_network_namespace_is_turned_on() {
    in_new_netns("ip_forward_real_sysctl", || {
        let path = Path::new(IP_FORWARD_SYSCTL);
        ensure(path).unwrap();
        assert!(is_enabled(path).unwrap());
    });
}
