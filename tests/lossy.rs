//! Lossy paths, in the simulation (`tests/sim/`): links whose TCP is
//! repairing a loss. A stalled link holds everything it carries, in order,
//! until the stall ends, and its sender's TCP reports loss recovery
//! meanwhile, as a real link does while it repairs a lost segment. The
//! schedulers must stop handing such a link new frames while another link
//! is fine.

mod sim;

use mtcp::proto::scheduler::SchedulerKind;
use sim::driver::Fault;
use sim::*;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Simulated time any one transfer may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// DATA frames `side` handed to `link` after `from` and before `to`
/// (simulated time since the start).
fn data_frames_on(s: &Sim, side: Side, link: usize, from: Duration, to: Duration) -> usize {
    let ep = if side == Side::Client {
        &s.client
    } else {
        &s.server
    };
    let base = s.now() - s.clock.elapsed();
    ep.sent
        .iter()
        .filter(|f| f.link == link && matches!(f.wire, Wire::Data { .. }))
        .filter(|f| (f.at - base) > from && (f.at - base) < to)
        .count()
}

/// A download over three links; 150 ms into it the server's side of link 0
/// stalls for 200 ms. Returns the simulation after the transfer, and when
/// the stall began.
fn download_with_a_stall(kind: SchedulerKind, tcp_info: bool) -> (Sim, Duration) {
    let spec = LinkSpec::delay(10 * MS).rate(2_000_000);
    let mut cfg = SimConfig::new(31, 3, spec);
    cfg.server.scheduler = kind;
    cfg.server.tcp_info = tcp_info;
    cfg.server.send_budget = 16 * MIB as u64;
    // A window that a 200 ms stall does not fill, so the server keeps
    // sending on the other links meanwhile; its backend writes 4.8 MB/s,
    // below what the three links carry, so their queues stay short.
    cfg.client.window = 8 * MIB as u32;
    let mut s = Sim::new(cfg);
    let down = 3 * MIB;
    let backend = AppPlan::bulk(down).write_paced(48 * KIB, 10 * MS);
    let id = s.open(AppPlan::bulk(0), backend);
    s.run_for(150 * MS).unwrap();
    let stalled_at = s.clock.elapsed();
    s.after(
        Duration::ZERO,
        Fault::Stall {
            link: 0,
            from: Side::Server,
            hold: 200 * MS,
        },
    );
    s.run_until(|s| s.ended(&[id]), LIMIT).unwrap();
    s.check_exact(id, 0, down).unwrap();
    s.check_clean().unwrap();
    (s, stalled_at)
}

/// Every scheduler stops handing the stalled link new DATA while the two
/// others are fine, and uses it again once it recovers; without TCP's
/// state (not Linux) round-robin keeps feeding it.
#[test]
fn a_link_repairing_a_loss_is_given_no_new_data_while_another_is_fine() {
    for kind in [
        SchedulerKind::RoundRobin,
        SchedulerKind::LeastQueued,
        SchedulerKind::Adaptive,
    ] {
        let (s, at) = download_with_a_stall(kind, true);
        let during = |link| data_frames_on(&s, Side::Server, link, at, at + 200 * MS);
        assert_eq!(during(0), 0, "{kind}: the stalled link was given DATA");
        assert!(
            during(1) > 0 && during(2) > 0,
            "{kind}: the other links idled"
        );
        let after = data_frames_on(&s, Side::Server, 0, at + 200 * MS, s.clock.elapsed());
        assert!(after > 0, "{kind}: the link was not used again after");
    }
    let (s, at) = download_with_a_stall(SchedulerKind::RoundRobin, false);
    let blind = data_frames_on(&s, Side::Server, 0, at, at + 200 * MS);
    assert!(blind > 0, "blind round robin spared the stalled link");
}

/// Control frames (ACKs: a sender may be waiting for one) avoid a link
/// whose TCP is repairing a loss, while another link is fine.
#[test]
fn acks_avoid_a_link_repairing_a_loss() {
    let mut s = Sim::new(SimConfig::new(32, 2, LinkSpec::delay(5 * MS)));
    let up = 2 * MIB;
    let id = s.open(AppPlan::bulk(up), AppPlan::bulk(0));
    s.run_until(|s| s.server.received_by_app(id) > 256 * KIB, LIMIT)
        .unwrap();
    let at = s.clock.elapsed();
    s.after(
        Duration::ZERO,
        Fault::Stall {
            link: 0,
            from: Side::Server,
            hold: 100 * MS,
        },
    );
    s.run_for(100 * MS).unwrap();
    let base = s.now() - s.clock.elapsed();
    let acks_on = |link| {
        s.server
            .sent
            .iter()
            .filter(|f| f.link == link && matches!(f.wire, Wire::Ack { .. }))
            .filter(|f| f.at - base > at && f.at - base < at + 100 * MS)
            .count()
    };
    assert_eq!(acks_on(0), 0, "an ACK went to the stalled link");
    assert!(acks_on(1) > 0, "no ACK at all during the stall");
    s.run_until(|s| s.ended(&[id]), LIMIT).unwrap();
    s.check_exact(id, up, 0).unwrap();
}
