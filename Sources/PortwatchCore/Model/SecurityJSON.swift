// The JSON of security detections (`top --capture --json`; the daemon's events carry the same
// facts as event fields). Part of the JSON view (JSON.swift).

extension JSONWriter {
    /// `{"kind", "phase", "time", "since", "source", "scan_kind", "protocol", "port",
    /// "ports_touched", "first_port", "last_port", "rate", "count", "sources", "reasons", "message"}`;
    /// `members` adds more before the object closes (the namespace of a multi-namespace view).
    public mutating func write(_ e: SecurityEvent, members: (inout JSONWriter) -> Void = { _ in }) {
        beginObject()
        field("kind", e.kind.rawValue)
        field("phase", e.phase.rawValue)
        field("time", double: e.time)
        field("since", double: e.since)
        field("source", e.source?.description)
        field("scan_kind", e.scanKind?.rawValue)
        field("protocol", e.proto?.rawValue)
        field("port", e.port)
        field("ports_touched", e.portsTouched)
        field("first_port", e.firstPort)
        field("last_port", e.lastPort)
        if let rate = e.rate { field("rate", double: rate) } else { nullField("rate") }
        field("count", e.count)
        array("sources") { w in
            for s in e.sources {
                w.beginObject()
                w.field("address", s.address.description)
                w.field("count", s.count)
                w.endObject()
            }
        }
        strings("reasons", e.reasons)
        field("message", e.message)
        members(&self)
        endObject()
    }

    /// `"detections": [...]` (going on) and `"security_events": [...]` (started or ended in the
    /// window), or nulls when the detectors did not run.
    public mutating func securityMembers(_ report: SecurityReport?) {
        guard let report else {
            nullField("detections")
            nullField("security_events")
            return
        }
        array("detections") { w in for e in report.active { w.write(e) } }
        array("security_events") { w in for e in report.events { w.write(e) } }
    }
}
