//! Lossy paths, in the simulation (`tests/sim/`): links whose TCP is
//! repairing a loss. A stalled link holds everything it carries, in order,
//! until the stall ends, and its sender's TCP reports loss recovery
//! meanwhile, as a real link does while it repairs a lost segment. The
//! schedulers must stop handing such a link new frames while another link
//! is fine.

mod sim;

use mtcp::proto::scheduler::{DuplicateMode, SchedulerKind};
use sim::app::ReadPace;
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

/// DATA bytes `side` sent per link, as shares of the total.
fn shares(s: &Sim, side: Side, links: usize) -> Vec<f64> {
    let bytes: Vec<u64> = (0..links).map(|l| s.net.data_carried(l, side).0).collect();
    let total: u64 = bytes.iter().sum();
    bytes.iter().map(|&b| b as f64 / total as f64).collect()
}

/// Four links, one of them ten times slower: `adaptive` (measuring each
/// link with PINGs) gives the slow link a small share of the bytes, and so
/// does `round_robin`, which passes over a link whose window is full while
/// another link is fine. Where TCP's state cannot be read, round-robin
/// gives every link the same number of frames, and takes longer.
#[test]
fn adaptive_and_round_robin_spare_a_slow_link_round_robin_without_tcp_info_does_not() {
    let fast = LinkSpec::delay(2 * MS).rate(20_000_000);
    let slow = LinkSpec::delay(2 * MS).rate(2_000_000);
    let run = |kind, tcp_info| {
        let mut cfg = SimConfig::new(10, 4, fast);
        cfg.links[3] = slow;
        cfg.client.scheduler = kind;
        cfg.client.tcp_info = tcp_info;
        cfg.server.window = MIB as u32;
        let mut s = Sim::new(cfg);
        let id = s.open(AppPlan::bulk(8 * MIB), AppPlan::bulk(0));
        s.run_until(|s| s.ended(&[id]), LIMIT).unwrap();
        s.check_exact(id, 8 * MIB, 0).unwrap();
        s
    };
    let adaptive = run(SchedulerKind::Adaptive, true);
    let share = shares(&adaptive, Side::Client, 4);
    assert!(share[3] < 0.08, "the slow link carried {share:?}");
    assert!(
        adaptive
            .client
            .sent
            .iter()
            .any(|f| matches!(f.wire, Wire::Ping(_))),
        "adaptive never measured a link"
    );

    // Here a whole window leaves at once, and once every link holds a
    // window's worth round-robin takes them in turn again: it spares the
    // slow link less than adaptive does.
    let rr = run(SchedulerKind::RoundRobin, true);
    let share = shares(&rr, Side::Client, 4);
    assert!(
        share[3] < 0.2,
        "round robin: the slow link carried {share:?}"
    );

    let blind = run(SchedulerKind::RoundRobin, false);
    let frames: Vec<u64> = (0..4)
        .map(|l| blind.net.data_carried(l, Side::Client).1)
        .collect();
    let (lo, hi) = (frames.iter().min().unwrap(), frames.iter().max().unwrap());
    assert!(hi - lo <= 1, "round robin sent {frames:?} frames per link");
    let share = shares(&blind, Side::Client, 4);
    assert!(
        share.iter().all(|s| (s - 0.25).abs() < 0.02),
        "round robin shares {share:?}"
    );
    for (name, s) in [("adaptive", &adaptive), ("round robin", &rr)] {
        assert!(
            s.clock.elapsed() < blind.clock.elapsed(),
            "{name} {:?} was not faster than blind round robin {:?}",
            s.clock.elapsed(),
            blind.clock.elapsed()
        );
    }
}

// ---- re-sending what holds a stream up -------------------------------

/// A request (a few hundred bytes, then the application waits for its
/// answer) rides a link that then holds everything for 400 ms, as TCP does
/// behind a lone lost segment until its retransmission timeout. About a
/// round trip and a margin after it was sent (40 + 10 ms), the client sends
/// it again on the other link, so the backend has it 400 ms sooner; the
/// original, arriving after the stall, is dropped as a duplicate; the
/// copy is counted, once. (Small frames are not sent on two links from
/// the start here, which would spare the request the wait altogether.)
#[test]
fn a_request_held_on_a_stalled_link_is_sent_again_on_another() {
    let mut cfg = SimConfig::new(41, 2, LinkSpec::delay(20 * MS));
    cfg.client.duplicate = DuplicateMode::Off;
    let mut s = Sim::new(cfg);
    s.client.route = Some(Box::new(|w, _| matches!(w, Wire::Data { .. }).then_some(0)));
    s.after(
        Duration::ZERO,
        Fault::Stall {
            link: 0,
            from: Side::Client,
            hold: 400 * MS,
        },
    );
    let request = 300;
    let id = s.open(
        AppPlan::bulk(request).keep_open(),
        AppPlan::bulk(0).keep_open(),
    );
    s.run_until(|s| s.server.received_by_app(id) == request, LIMIT)
        .unwrap();
    let arrived = s.clock.elapsed();
    assert!(
        arrived < 100 * MS,
        "the request reached the backend after {arrived:?}"
    );
    let base = s.now() - s.clock.elapsed();
    let copies: Vec<_> = s
        .client
        .stats
        .reinjections
        .iter()
        .map(|&(at, stream, offset, from, to)| (at - base, stream, offset, from, to))
        .collect();
    assert_eq!(
        copies,
        [(50 * MS, id, 0, 0, 1)],
        "sent again once, at 50 ms"
    );
    assert_eq!(s.client.stats.bytes_reinjected, request as u64);
    s.run_for(500 * MS).unwrap();
    assert_eq!(s.server.stats.dup_bytes, request as u64, "the original");
    assert_eq!(s.server.received_by_app(id), request, "delivered once");
    assert_eq!(s.client.stats.frames_reinjected, 1, "and only once");
    assert!(s.server.stats.violations.is_empty());
}

/// The same without re-sending (`reinject = false`): the request waits for
/// the stall to end.
#[test]
fn without_reinject_a_request_waits_for_the_stalled_link() {
    let mut cfg = SimConfig::new(41, 2, LinkSpec::delay(20 * MS));
    cfg.client.reinject = false;
    cfg.client.duplicate = DuplicateMode::Off;
    let mut s = Sim::new(cfg);
    s.client.route = Some(Box::new(|w, _| matches!(w, Wire::Data { .. }).then_some(0)));
    s.after(
        Duration::ZERO,
        Fault::Stall {
            link: 0,
            from: Side::Client,
            hold: 400 * MS,
        },
    );
    let id = s.open(AppPlan::bulk(300).keep_open(), AppPlan::bulk(0).keep_open());
    s.run_until(|s| s.server.received_by_app(id) == 300, LIMIT)
        .unwrap();
    assert!(s.clock.elapsed() >= 400 * MS, "{:?}", s.clock.elapsed());
    assert_eq!(s.client.stats.frames_reinjected, 0);
}

/// An upload over three links; one stalls for 300 ms while it carries part
/// of the stream. The chunks held there are sent again on the two others
/// (within the bounds), the originals are dropped as duplicates when the
/// stall ends, every byte arrives exactly once, in order, and the upload
/// finishes sooner than without re-sending.
#[test]
fn a_bulk_transfer_sends_its_held_chunks_again_and_arrives_exactly() {
    let run = |reinject| {
        let mut cfg = SimConfig::new(42, 3, LinkSpec::delay(10 * MS).rate(2_000_000));
        cfg.client.reinject = reinject;
        let mut s = Sim::new(cfg);
        let up = MIB;
        let id = s.open(AppPlan::bulk(up), AppPlan::bulk(0));
        s.run_for(60 * MS).unwrap();
        s.after(
            Duration::ZERO,
            Fault::Stall {
                link: 0,
                from: Side::Client,
                hold: 300 * MS,
            },
        );
        s.run_until(|s| s.ended(&[id]), LIMIT).unwrap();
        s.check_exact(id, up, 0).unwrap();
        s.check_clean().unwrap();
        assert!(s.server.stats.violations.is_empty());
        s
    };
    let on = run(true);
    let off = run(false);
    let copies = on.client.stats.frames_reinjected;
    let bytes = on.client.stats.bytes_reinjected;
    assert!(copies > 0, "nothing was sent again");
    assert!(
        on.client
            .stats
            .reinjections
            .iter()
            .all(|&(_, _, _, from, to)| from == 0 && to != 0),
        "{:?}",
        on.client.stats.reinjections
    );
    assert!(
        bytes <= (MIB as u64) / 16 + 16 * KIB as u64,
        "{bytes} bytes sent again, past a sixteenth plus a chunk"
    );
    assert!(
        on.server.stats.dup_bytes >= bytes,
        "duplicates dropped: {} of {bytes}",
        on.server.stats.dup_bytes
    );
    assert_eq!(off.client.stats.frames_reinjected, 0);
    assert!(
        on.clock.elapsed() < off.clock.elapsed(),
        "with re-sending {:?}, without {:?}",
        on.clock.elapsed(),
        off.clock.elapsed()
    );
}

/// On a clean path nothing is sent again: bulk both ways over jittery
/// links, request/response streams, and a backend that stops reading for
/// 300 ms (its stream's ACK stands still, but the link delivered the bytes:
/// the stall is the application's, and sending again would not help).
#[test]
fn on_a_clean_path_nothing_is_sent_again_even_when_an_application_stalls() {
    let mut cfg = SimConfig::new(43, 4, LinkSpec::delay(5 * MS));
    for (i, l) in cfg.links.iter_mut().enumerate() {
        *l = LinkSpec::delay(MS * (i as u32 + 2))
            .jitter(3 * MS)
            .rate(5_000_000);
    }
    let mut s = Sim::new(cfg);
    let bulk = s.open(AppPlan::bulk(2 * MIB), AppPlan::bulk(3 * MIB));
    let stalled = s.open(
        AppPlan::bulk(MIB),
        AppPlan::bulk(KIB).read(ReadPace::Stalled),
    );
    let small: Vec<_> = (0..5)
        .map(|_| s.open(AppPlan::bulk(200), AppPlan::bulk(300)))
        .collect();
    s.run_for(300 * MS).unwrap();
    s.server
        .set_read_pace(stalled, ReadPace::Unlimited, s.now());
    let mut all = vec![bulk, stalled];
    all.extend(&small);
    s.run_until(|s| s.ended(&all), LIMIT).unwrap();
    s.check_exact(bulk, 2 * MIB, 3 * MIB).unwrap();
    s.check_exact(stalled, MIB, KIB).unwrap();
    for &id in &small {
        s.check_exact(id, 200, 300).unwrap();
    }
    for ep in [&s.client, &s.server] {
        assert_eq!(ep.stats.frames_reinjected, 0, "{:?}", ep.stats.reinjections);
        assert_eq!(ep.stats.frames_duplicated, 0, "no link lost anything");
        assert_eq!(ep.stats.dup_bytes, 0);
    }
}

/// A backend that stops reading holds its stream's ACK still, and then the
/// link that carried the stream's bytes stalls (a loss of another stream's
/// segment): those bytes reached the peer long before (the link was handed
/// a busy stream's bytes after them and holds less than that), so none of
/// them is sent again, however long the ACK stands still.
#[test]
fn a_stalled_application_on_a_lossy_link_sends_nothing_again() {
    let mut cfg = SimConfig::new(47, 2, LinkSpec::delay(10 * MS).rate(2_000_000));
    cfg.client.duplicate = DuplicateMode::Off;
    let mut s = Sim::new(cfg);
    let slow = s.open(AppPlan::bulk(MIB), AppPlan::bulk(0).read(ReadPace::Stalled));
    s.client.route = Some(Box::new(move |w, _| {
        matches!(*w, Wire::Data { stream, .. } if stream == slow).then_some(0)
    }));
    // The slow stream's window (256 KiB) fills and reaches the server.
    s.run_until(|s| s.client.in_flight(slow) >= 256 * KIB as u64, LIMIT)
        .unwrap();
    let busy = s.open(AppPlan::bulk(2 * MIB), AppPlan::bulk(0));
    s.run_for(100 * MS).unwrap();
    s.after(
        Duration::ZERO,
        Fault::Stall {
            link: 0,
            from: Side::Client,
            hold: 300 * MS,
        },
    );
    s.run_for(600 * MS).unwrap();
    // (The busy stream's own chunks held on the stalled link may go again.)
    let slow_copies = s
        .client
        .stats
        .reinjections
        .iter()
        .filter(|r| r.1 == slow)
        .count();
    assert_eq!(slow_copies, 0, "{:?}", s.client.stats.reinjections);
    s.server.set_read_pace(slow, ReadPace::Unlimited, s.now());
    s.run_until(|s| s.ended(&[slow, busy]), LIMIT).unwrap();
    s.check_exact(slow, MIB, 0).unwrap();
    s.check_exact(busy, 2 * MIB, 0).unwrap();
}

/// When every other link is also repairing a loss there is no spare: the
/// held bytes wait for their own link, as without re-sending.
#[test]
fn with_no_fine_link_to_spare_nothing_is_sent_again() {
    let mut s = Sim::new(SimConfig::new(44, 2, LinkSpec::delay(20 * MS)));
    for link in 0..2 {
        s.after(
            Duration::ZERO,
            Fault::Stall {
                link,
                from: Side::Client,
                hold: 300 * MS,
            },
        );
    }
    let id = s.open(AppPlan::bulk(300).keep_open(), AppPlan::bulk(0).keep_open());
    s.run_until(|s| s.server.received_by_app(id) == 300, LIMIT)
        .unwrap();
    assert!(s.clock.elapsed() >= 300 * MS);
    assert_eq!(s.client.stats.frames_reinjected, 0);
}

// ---- small frames on two links ----------------------------------------

/// While a link is lossy (`on_loss`, the default), a request alone in
/// flight on its stream also goes to a second link from the start: held on
/// the stalled link, it reaches the backend over the other one within the
/// path's delay, with no re-send; the copy that arrives second is dropped;
/// the copy is counted.
#[test]
fn while_a_link_is_lossy_a_request_goes_on_two_links_and_waits_for_none() {
    let mut s = Sim::new(SimConfig::new(45, 2, LinkSpec::delay(20 * MS)));
    s.client.route = Some(Box::new(|w, _| matches!(w, Wire::Data { .. }).then_some(0)));
    s.after(
        Duration::ZERO,
        Fault::Stall {
            link: 0,
            from: Side::Client,
            hold: 400 * MS,
        },
    );
    let id = s.open(AppPlan::bulk(300).keep_open(), AppPlan::bulk(0).keep_open());
    s.run_until(|s| s.server.received_by_app(id) == 300, LIMIT)
        .unwrap();
    assert_eq!(s.clock.elapsed(), 20 * MS, "over the other link at once");
    assert_eq!(
        (
            s.client.stats.frames_duplicated,
            s.client.stats.bytes_duplicated
        ),
        (1, 300)
    );
    s.run_for(500 * MS).unwrap();
    assert_eq!(s.client.stats.frames_reinjected, 0, "nothing to re-send");
    assert_eq!(
        s.server.stats.dup_bytes, 300,
        "the original, after the stall"
    );
    assert_eq!(s.server.received_by_app(id), 300, "delivered once");
}

/// `always`: every small frame alone in flight on its stream goes on two
/// links, on a clean path too: each request and each answer once more,
/// and a bulk stream's first frame only; every copy is dropped at the
/// peer, and the bytes arrive exactly. `off`, and `on_loss` on a clean
/// path, send nothing twice.
#[test]
fn small_frames_alone_in_flight_are_duplicated_as_the_setting_says() {
    let run = |mode| {
        let mut cfg = SimConfig::new(46, 3, LinkSpec::delay(5 * MS).jitter(2 * MS));
        cfg.client.duplicate = mode;
        cfg.server.duplicate = mode;
        let mut s = Sim::new(cfg);
        let mut ids = Vec::new();
        for _ in 0..4 {
            let id = s.open(AppPlan::bulk(100), AppPlan::bulk(200));
            s.run_until(|s| s.ended(&[id]), LIMIT).unwrap();
            s.check_exact(id, 100, 200).unwrap();
            ids.push(id);
        }
        let bulk = s.open(AppPlan::bulk(MIB), AppPlan::bulk(0));
        s.run_until(|s| s.ended(&[bulk]), LIMIT).unwrap();
        s.check_exact(bulk, MIB, 0).unwrap();
        s.check_clean().unwrap();
        s
    };
    let always = run(DuplicateMode::Always);
    let (c, sv) = (&always.client.stats, &always.server.stats);
    let first = 16 * KIB as u64;
    assert_eq!(
        (c.frames_duplicated, c.bytes_duplicated),
        (5, 4 * 100 + first),
        "four requests and the bulk stream's first frame"
    );
    assert_eq!((sv.frames_duplicated, sv.bytes_duplicated), (4, 4 * 200));
    assert_eq!(sv.dup_bytes, 4 * 100 + first, "every copy dropped");
    // An answer's copy may arrive once its stream ended at the client,
    // and is then dropped as a frame for a stream gone.
    assert!(c.dup_bytes <= 4 * 200 && c.dup_bytes > 0, "{}", c.dup_bytes);
    assert!(c.violations.is_empty() && sv.violations.is_empty());
    for mode in [DuplicateMode::Off, DuplicateMode::OnLoss] {
        let s = run(mode);
        for ep in [&s.client, &s.server] {
            assert_eq!(ep.stats.frames_duplicated, 0, "{mode}");
            assert_eq!(ep.stats.dup_bytes, 0, "{mode}");
        }
    }
}
