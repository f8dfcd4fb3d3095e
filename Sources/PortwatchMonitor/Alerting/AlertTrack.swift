/// Where one rule stands on one port between samples: the pending → firing → resolved state
/// machine with `for:` on the way up and `keep_firing_for` on the way down.
///
/// A pending alert that sees its condition false is dropped at once (it was never announced);
/// a firing one resolves only after the condition has stayed false for `keepFiringFor`, so a
/// value oscillating around a threshold keeps one alert firing instead of a storm of them.
struct AlertTrack: Sendable {
    /// The alert as it stands (pending or firing), value and message refreshed every sample.
    var alert: Alert
    /// When the condition became true (the start of pending).
    var conditionSince: Double
    /// When the condition was last seen false while firing; nil while it holds.
    var falseSince: Double?

    /// What a step did that the outside must hear about.
    enum Transition: Sendable {
        case none
        case fired(Alert)
        case resolved(Alert)
    }

    /// The timing of one rule.
    struct Timing: Sendable {
        var forSeconds: Double
        var keepFiringForSeconds: Double
    }

    /// Advances `track` by one sample. `condition` nil means no data this time (the state stays);
    /// `alert` builds the alert text for the current value.
    static func step(_ track: inout AlertTrack?, condition: Bool?, now: Double, timing: Timing,
                     alert makeAlert: () -> Alert) -> Transition {
        guard let condition else { return .none }
        if condition {
            guard var current = track else {
                var alert = makeAlert()
                alert.since = now
                if timing.forSeconds <= 0 {
                    alert.state = .firing
                    track = AlertTrack(alert: alert, conditionSince: now, falseSince: nil)
                    return .fired(alert)
                }
                alert.state = .pending
                track = AlertTrack(alert: alert, conditionSince: now, falseSince: nil)
                return .none
            }
            let fresh = makeAlert()
            current.alert.value = fresh.value
            current.alert.threshold = fresh.threshold
            current.alert.message = fresh.message
            current.falseSince = nil
            if current.alert.state == .pending, now - current.conditionSince >= timing.forSeconds {
                current.alert.state = .firing
                current.alert.since = now
                track = current
                return .fired(current.alert)
            }
            track = current
            return .none
        }
        guard var current = track else { return .none }
        if current.alert.state == .pending {
            track = nil
            return .none
        }
        let falseSince = current.falseSince ?? now
        current.falseSince = falseSince
        if now - falseSince >= timing.keepFiringForSeconds {
            var resolved = current.alert
            resolved.state = .resolved
            resolved.since = now
            let fresh = makeAlert()
            resolved.value = fresh.value
            resolved.message = fresh.message
            track = nil
            return .resolved(resolved)
        }
        track = current
        return .none
    }

    /// Resolves a firing track at once (its rule was removed); pending ones vanish silently.
    static func close(_ track: AlertTrack, now: Double) -> Alert? {
        guard track.alert.state == .firing else { return nil }
        var resolved = track.alert
        resolved.state = .resolved
        resolved.since = now
        return resolved
    }
}
