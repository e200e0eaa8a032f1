use std::collections::HashSet;

use super::*;

fn pool(cidr: &str) -> IpPool {
    IpPool::new(cidr.parse().unwrap()).unwrap()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn a_slash_30_has_exactly_one_client_address_after_the_gateway() {
    let mut pool = pool("10.8.0.0/30");
    assert_eq!(pool.gateway_address(), ip("10.8.0.1"));
    assert_eq!(pool.allocate(), Ok(ip("10.8.0.2")));
    assert_eq!(pool.allocate(), Err(PoolError::Exhausted));
}

#[test]
fn pools_smaller_than_a_slash_30_are_refused() {
    assert!(matches!(
        IpPool::new("10.8.0.0/31".parse().unwrap()),
        Err(PoolError::TooSmall(_))
    ));
    assert!(matches!(
        IpPool::new("10.8.0.0/32".parse().unwrap()),
        Err(PoolError::TooSmall(_))
    ));
}

#[test]
fn network_broadcast_and_gateway_are_never_handed_out() {
    let mut pool = pool("192.168.7.0/28");
    let mut got = HashSet::new();
    while let Ok(addr) = pool.allocate() {
        assert!(got.insert(addr), "{addr} handed out twice");
    }
    assert_eq!(got.len(), 13, "16 minus network, gateway and broadcast");
    for never in ["192.168.7.0", "192.168.7.1", "192.168.7.15"] {
        assert!(!got.contains(&ip(never)), "{never}");
    }
}

#[test]
fn reserved_addresses_are_only_handed_out_statically() {
    let mut pool = pool("10.8.0.0/29"); // clients .2 to .6
    let refused = pool.set_reserved([
        ip("10.8.0.3"),
        ip("10.8.0.5"),
        ip("10.9.0.1"),
        ip("10.8.0.1"),
    ]);
    assert_eq!(refused, vec![ip("10.8.0.1"), ip("10.9.0.1")]);
    let dynamic: Vec<_> = std::iter::from_fn(|| pool.allocate().ok()).collect();
    assert_eq!(
        dynamic,
        vec![ip("10.8.0.2"), ip("10.8.0.4"), ip("10.8.0.6")]
    );
    assert_eq!(pool.allocate_static(ip("10.8.0.5")), Ok(ip("10.8.0.5")));
    assert_eq!(
        pool.allocate_static(ip("10.8.0.5")),
        Err(PoolError::InUse(ip("10.8.0.5")))
    );
    assert_eq!(
        pool.allocate_static(ip("10.8.0.7")),
        Err(PoolError::OutOfRange(ip("10.8.0.7")))
    );
}

#[test]
fn a_released_address_is_not_the_next_one_handed_out() {
    let mut pool = pool("10.8.0.0/24");
    let first = pool.allocate().unwrap();
    assert!(pool.release(first));
    assert_ne!(pool.allocate().unwrap(), first);
    assert!(!pool.release(first), "a double release reports false");
}

#[test]
fn counts_add_up_to_the_pool_size() {
    let mut pool = pool("10.8.0.0/29");
    pool.set_reserved([ip("10.8.0.3"), ip("10.8.0.4")]);
    pool.allocate_static(ip("10.8.0.3")).unwrap();
    pool.allocate().unwrap();
    assert_eq!(
        pool.counts(),
        PoolCounts {
            free: 2,
            allocated: 2,
            reserved: 1
        }
    );
}

/// A small xorshift generator so the randomized test is reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_operations_keep_every_invariant() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut pool = pool("10.20.30.0/27"); // 29 client addresses
        let mut held: HashSet<Ipv4Addr> = HashSet::new();
        let mut reserved: HashSet<Ipv4Addr> = HashSet::new();
        for _ in 0..2_000 {
            let addr = Ipv4Addr::from(u32::from(ip("10.20.30.0")) + (rng.next() % 34) as u32);
            match rng.next() % 5 {
                0 | 1 => match pool.allocate() {
                    Ok(got) => {
                        assert!(pool.is_client_address(got));
                        assert!(
                            !reserved.contains(&got),
                            "seed {seed}: reserved {got} handed out"
                        );
                        assert!(held.insert(got), "seed {seed}: {got} handed out twice");
                    }
                    Err(PoolError::Exhausted) => {
                        let free = (2..31)
                            .map(|i| Ipv4Addr::from(u32::from(ip("10.20.30.0")) + i))
                            .filter(|a| !held.contains(a) && !reserved.contains(a))
                            .count();
                        assert_eq!(free, 0, "seed {seed}: exhausted with {free} free");
                    }
                    Err(other) => panic!("seed {seed}: {other}"),
                },
                2 => {
                    let ok = pool.allocate_static(addr).is_ok();
                    assert_eq!(ok, pool.is_client_address(addr) && !held.contains(&addr));
                    if ok {
                        held.insert(addr);
                    }
                }
                3 => assert_eq!(pool.release(addr), held.remove(&addr)),
                _ => {
                    let picks: Vec<_> = (0..3)
                        .map(|_| {
                            Ipv4Addr::from(u32::from(ip("10.20.30.0")) + (rng.next() % 34) as u32)
                        })
                        .collect();
                    pool.set_reserved(picks.iter().copied());
                    reserved = picks
                        .into_iter()
                        .filter(|a| pool.is_client_address(*a))
                        .collect();
                }
            }
            let counts = pool.counts();
            assert_eq!(counts.free + counts.allocated + counts.reserved, 29);
            assert_eq!(counts.allocated as usize, held.len());
        }
    }
}
