use super::*;
use crate::policy::{MinTlsVersion, SecurityLevel};

fn policy(level: SecurityLevel, min_tls: MinTlsVersion) -> Effective {
    Effective { level, min_tls }
}

const S: fn(u64) -> Duration = Duration::from_secs;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + S(1_800_000_000)
}

fn loose() -> Effective {
    policy(SecurityLevel::Opportunistic, MinTlsVersion::Any)
}

fn why(text: &str) -> Reason {
    use crate::delivery::reason::{status, LocalCause};
    Reason::local(LocalCause::ConnectionFailed, status::NO_ANSWER, text)
}

fn down() -> Health {
    Health::Unreachable(why("connection refused"))
}

#[test]
fn a_refused_policy_pauses_only_itself_until_it_delivers_again() {
    let (s, t0) = (S, t0());
    let strict = policy(SecurityLevel::Mandatory, MinTlsVersion::Tls12);
    let loose = loose();
    let mut p = Pauses::default();
    let refused = Health::Refused(why("STARTTLS not offered"));
    assert_eq!(
        p.record(&refused, &strict, t0, t0, s(60), s(600)),
        PauseChange::Paused {
            failures: 1,
            pause: s(60)
        }
    );
    assert!(p.holding(&strict, t0 + s(1)).is_some());
    assert!(
        p.holding(&loose, t0 + s(1)).is_none(),
        "other policies go on"
    );
    assert_eq!(p.down_pause(t0 + s(1)), None);
    // Mail under the other policy is delivered: the refusal stays.
    p.record(
        &Health::Reached,
        &loose,
        t0 + s(2),
        t0 + s(2),
        s(60),
        s(600),
    );
    assert!(p.holding(&strict, t0 + s(3)).is_some());
    // The pause runs out; other mail goes on meanwhile.
    assert!(p.holding(&strict, t0 + s(60)).is_none());
    p.record(
        &Health::Reached,
        &loose,
        t0 + s(60),
        t0 + s(60),
        s(60),
        s(600),
    );
    // A probe under the same policy is refused again: the pause doubles.
    assert_eq!(
        p.record(&refused, &strict, t0 + s(61), t0 + s(61), s(60), s(600)),
        PauseChange::Paused {
            failures: 2,
            pause: s(120)
        }
    );
    // A transaction under it clears it.
    assert_eq!(
        p.record(
            &Health::Reached,
            &strict,
            t0 + s(200),
            t0 + s(200),
            s(60),
            s(600)
        ),
        PauseChange::Cleared {
            down: false,
            policy: true
        }
    );
    assert!(p.holding(&strict, t0 + s(201)).is_none());
}

#[test]
fn an_unreachable_destination_pauses_every_policy_until_a_server_answers() {
    let (s, t0) = (S, t0());
    let strict = policy(SecurityLevel::MandatoryDane, MinTlsVersion::Tls13);
    let loose = loose();
    let mut p = Pauses::default();
    p.record(&down(), &strict, t0, t0, s(60), s(600));
    assert!(p.holding(&loose, t0 + s(1)).is_some());
    assert!(p.holding(&strict, t0 + s(1)).is_some());
    assert_eq!(p.down_pause(t0 + s(1)), Some((t0, t0 + s(60))));
    assert!(
        p.holding(&loose, t0 + s(61)).is_none(),
        "the pause runs out"
    );
    assert_eq!(
        p.record(
            &Health::Reached,
            &loose,
            t0 + s(65),
            t0 + s(70),
            s(60),
            s(600)
        ),
        PauseChange::Cleared {
            down: true,
            policy: false
        }
    );
    assert!(p.holding(&strict, t0 + s(71)).is_none());
    assert_eq!(
        p.record(
            &Health::NotTried,
            &strict,
            t0 + s(72),
            t0 + s(72),
            s(60),
            s(600)
        ),
        PauseChange::None
    );
}

/// The outage of issue 14: every attempt under way fails at about the
/// same moment. The pause is the first step, not the maximum.
#[test]
fn attempts_failing_together_count_once() {
    let (s, t0) = (S, t0());
    let mut p = Pauses::default();
    let mut changes = Vec::new();
    for i in 0..16 {
        // Started together at t0, failing one after the other.
        changes.push(p.record(&down(), &loose(), t0, t0 + s(1 + i), s(60), s(1800)));
    }
    assert_eq!(
        changes[0],
        PauseChange::Paused {
            failures: 1,
            pause: s(60)
        }
    );
    assert!(changes[1..].iter().all(|c| *c
        == PauseChange::Counted {
            since: t0 + s(1),
            until: t0 + s(61)
        }));
    assert_eq!(p.down_pause(t0 + s(30)), Some((t0 + s(1), t0 + s(61))));
    assert!(p.holding(&loose(), t0 + s(61)).is_none());
}

#[test]
fn only_a_probe_after_the_pause_doubles_it() {
    let (s, t0) = (S, t0());
    let mut p = Pauses::default();
    p.record(&down(), &loose(), t0, t0 + s(1), s(60), s(1800));
    // A slow attempt from before the pause fails after it ran out:
    // counted already, nothing held back.
    assert_eq!(
        p.record(&down(), &loose(), t0, t0 + s(90), s(60), s(1800)),
        PauseChange::Counted {
            since: t0 + s(1),
            until: t0 + s(61)
        }
    );
    assert!(p.holding(&loose(), t0 + s(91)).is_none());
    // Probes started after the pause fail: the first doubles, the
    // ones started beside it do not.
    let table = [
        (62, 63, Some((2, 120))),
        (62, 64, None),
        (62, 70, None),
        (184, 185, Some((3, 240))),
        (426, 427, Some((4, 480))),
    ];
    for (started, ended, want) in table {
        let change = p.record(
            &down(),
            &loose(),
            t0 + s(started),
            t0 + s(ended),
            s(60),
            s(1800),
        );
        match want {
            Some((failures, pause)) => assert_eq!(
                change,
                PauseChange::Paused {
                    failures,
                    pause: s(pause)
                },
                "started {started}"
            ),
            None => assert!(
                matches!(change, PauseChange::Counted { .. }),
                "started {started}: {change:?}"
            ),
        }
    }
}

#[test]
fn failures_from_before_an_answer_or_a_flush_are_stale() {
    let (s, t0) = (S, t0());
    let mut p = Pauses::default();
    // A server answered at t0+10; an attempt from t0+5 fails later.
    p.record(
        &Health::Reached,
        &loose(),
        t0 + s(8),
        t0 + s(10),
        s(60),
        s(1800),
    );
    assert_eq!(
        p.record(&down(), &loose(), t0 + s(5), t0 + s(12), s(60), s(1800)),
        PauseChange::Stale
    );
    assert!(p.holding(&loose(), t0 + s(13)).is_none());
    // Paused, then flushed: attempts under way at the flush do not
    // pause it again; a new one does, from the first step.
    p.record(&down(), &loose(), t0 + s(20), t0 + s(21), s(60), s(1800));
    p.clear(t0 + s(30));
    assert!(p.holding(&loose(), t0 + s(30)).is_none());
    let refused = Health::Refused(why("STARTTLS not offered"));
    let strict = policy(SecurityLevel::Mandatory, MinTlsVersion::Tls12);
    assert_eq!(
        p.record(&down(), &loose(), t0 + s(25), t0 + s(31), s(60), s(1800)),
        PauseChange::Stale
    );
    assert_eq!(
        p.record(&refused, &strict, t0 + s(25), t0 + s(31), s(60), s(1800)),
        PauseChange::Stale
    );
    assert_eq!(
        p.record(&down(), &loose(), t0 + s(32), t0 + s(33), s(60), s(1800)),
        PauseChange::Paused {
            failures: 1,
            pause: s(60)
        }
    );
}

#[test]
fn pauses_double_up_to_the_maximum() {
    let s = S;
    let table = [(1, 60), (2, 120), (3, 240), (6, 1800), (40, 1800)];
    for (failures, want) in table {
        assert_eq!(pause_after(failures, s(60), s(1800)), s(want), "{failures}");
    }
}
