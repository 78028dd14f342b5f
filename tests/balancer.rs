//! The balancer without sockets: feed it candidates, read its picks.

use std::net::{IpAddr, Ipv4Addr};

use ferroxy::balance::{Balancer, Candidates};
use ferroxy::config::Balancing;

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("127.0.0.1:{}", 9001 + i)).collect()
}

fn client(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn picks(b: &mut Balancer, allowed: &[bool], active: &[usize], n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            b.pick(&Candidates {
                allowed,
                active,
                client: client(1),
            })
            .expect("something is allowed")
        })
        .collect()
}

fn letters(indices: &[usize]) -> String {
    indices
        .iter()
        .map(|&i| ((b'a' + i as u8) as char).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn smooth_weighted_round_robin_spreads_a_heavy_weight_instead_of_bursting() {
    let mut b = Balancer::new(Balancing::RoundRobin, &[5, 1, 1], &keys(3));
    let seq = picks(&mut b, &[true; 3], &[0; 3], 14);
    assert_eq!(letters(&seq[..7]), "a a b a c a a");
    assert_eq!(letters(&seq[7..]), "a a b a c a a", "the cycle repeats");
}

#[test]
fn equal_weights_are_plain_round_robin() {
    let mut b = Balancer::new(Balancing::RoundRobin, &[1, 1, 1], &keys(3));
    assert_eq!(
        letters(&picks(&mut b, &[true; 3], &[0; 3], 6)),
        "a b c a b c"
    );
}

#[test]
fn a_disallowed_upstream_is_skipped_and_the_others_keep_their_ratio() {
    let mut b = Balancer::new(Balancing::RoundRobin, &[2, 1, 1], &keys(3));
    let seq = picks(&mut b, &[true, false, true], &[0; 3], 6);
    assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 4);
    assert_eq!(seq.iter().filter(|&&i| i == 2).count(), 2);
    assert!(!seq.contains(&1));
}

#[test]
fn nothing_allowed_is_no_pick() {
    for strategy in [
        Balancing::RoundRobin,
        Balancing::LeastConn,
        Balancing::IpHash,
    ] {
        let mut b = Balancer::new(strategy, &[1, 1], &keys(2));
        let none = b.pick(&Candidates {
            allowed: &[false, false],
            active: &[0, 0],
            client: client(7),
        });
        assert_eq!(none, None, "{strategy:?}");
    }
}

#[test]
fn least_conn_picks_the_fewest_in_flight_relative_to_weight() {
    let mut b = Balancer::new(Balancing::LeastConn, &[3, 1], &keys(2));
    // 5 on a (weight 3: 1.67 each) against 2 on b (weight 1: 2.0): a wins.
    assert_eq!(picks(&mut b, &[true; 2], &[5, 2], 1), [0]);
    // 6 on a (2.0) against 2 on b (2.0): a tie, broken round-robin.
    let ties = picks(&mut b, &[true; 2], &[6, 2], 4);
    assert_eq!(letters(&ties), "b a b a");
    // 7 on a (2.33) against 2 on b: b.
    assert_eq!(picks(&mut b, &[true; 2], &[7, 2], 1), [1]);
}

#[test]
fn least_conn_ties_rotate_so_idle_upstreams_share_evenly() {
    let mut b = Balancer::new(Balancing::LeastConn, &[1, 1, 1], &keys(3));
    assert_eq!(
        letters(&picks(&mut b, &[true; 3], &[0; 3], 6)),
        "a b c a b c"
    );
}

fn ring_pick(b: &mut Balancer, allowed: &[bool], who: IpAddr) -> usize {
    b.pick(&Candidates {
        allowed,
        active: &[0; 8],
        client: who,
    })
    .expect("an upstream is allowed")
}

#[test]
fn ip_hash_keeps_a_client_on_one_upstream_and_spreads_clients() {
    let mut b = Balancer::new(Balancing::IpHash, &[1, 1, 1], &keys(3));
    let mut share = [0usize; 3];
    for n in 0..3000 {
        let first = ring_pick(&mut b, &[true; 3], client(n));
        assert_eq!(first, ring_pick(&mut b, &[true; 3], client(n)));
        share[first] += 1;
    }
    for (i, &s) in share.iter().enumerate() {
        assert!(
            (700..=1300).contains(&s),
            "upstream {i} got {s} of 3000 clients: {share:?}"
        );
    }
}

#[test]
fn ip_hash_moves_only_the_down_upstreams_clients() {
    let mut b = Balancer::new(Balancing::IpHash, &[1, 1, 1], &keys(3));
    let before: Vec<usize> = (0..3000)
        .map(|n| ring_pick(&mut b, &[true; 3], client(n)))
        .collect();
    let after: Vec<usize> = (0..3000)
        .map(|n| ring_pick(&mut b, &[true, false, true], client(n)))
        .collect();
    for (n, (&was, &now)) in before.iter().zip(&after).enumerate() {
        if was == 1 {
            assert_ne!(now, 1, "client {n} still sent to the down upstream");
        } else {
            assert_eq!(was, now, "client {n} moved although its upstream is up");
        }
    }
    // Back up: everyone returns to where they were.
    for (n, &was) in before.iter().enumerate() {
        assert_eq!(ring_pick(&mut b, &[true; 3], client(n as u32)), was);
    }
}

#[test]
fn ip_hash_adding_an_upstream_moves_only_the_share_it_takes() {
    let mut three = Balancer::new(Balancing::IpHash, &[1, 1, 1], &keys(3));
    let mut four = Balancer::new(Balancing::IpHash, &[1, 1, 1, 1], &keys(4));
    let mut moved = 0;
    for n in 0..4000 {
        let was = ring_pick(&mut three, &[true; 3], client(n));
        let now = ring_pick(&mut four, &[true; 4], client(n));
        if was != now {
            assert_eq!(now, 3, "a client moved between two old upstreams");
            moved += 1;
        }
    }
    // The newcomer's fair share is a quarter.
    assert!((700..=1300).contains(&moved), "{moved} of 4000 moved");
}

#[test]
fn ip_hash_treats_an_ipv4_mapped_address_as_the_ipv4_client() {
    let mut b = Balancer::new(Balancing::IpHash, &[1, 1, 1, 1], &keys(4));
    for n in 0..200 {
        let v4 = client(n);
        let IpAddr::V4(inner) = v4 else {
            unreachable!()
        };
        let mapped = IpAddr::V6(inner.to_ipv6_mapped());
        assert_eq!(
            ring_pick(&mut b, &[true; 4], v4),
            ring_pick(&mut b, &[true; 4], mapped)
        );
    }
}

#[test]
fn ip_hash_weights_are_shares_of_the_ring() {
    let mut b = Balancer::new(Balancing::IpHash, &[3, 1], &keys(2));
    let heavy = (0..4000)
        .filter(|&n| ring_pick(&mut b, &[true; 2], client(n)) == 0)
        .count();
    assert!(
        (2700..=3300).contains(&heavy),
        "{heavy} of 4000 on weight 3"
    );
}
