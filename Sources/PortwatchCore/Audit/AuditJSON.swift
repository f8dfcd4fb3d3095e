// The `audit --json` document (PRODUCT.md): written straight into the streaming JSONWriter,
// like every other command's document.

extension JSONWriter {
    /// `{"listeners": [...], "findings": [...], "drift": {...}|null, "firewall": "...", "notes": [...]}`.
    public mutating func audit(_ report: AuditReport, services: ServiceDatabase) {
        beginObject()
        array("listeners") { w in
            for l in report.listeners { w.auditListener(l, service: services.name(port: l.summary.port, proto: l.summary.proto)) }
        }
        array("findings") { w in
            for f in report.findings { w.auditFinding(f, withPort: true) }
        }
        key("drift")
        if let d = report.drift { drift(d) } else { null() }
        field("firewall", report.firewall)
        notes(report.notes)
        endObject()
    }

    mutating func auditListener(_ l: AuditListener, service: String?) {
        beginObject()
        field("protocol", l.summary.proto.rawValue)
        field("port", l.summary.port)
        field("service", service)
        strings("addresses", l.summary.addresses)
        field("exposure", l.reach.exposure.rawValue)
        strings("families", l.reach.families.map(\.rawValue))
        strings("interfaces", l.reach.interfaces)
        object("firewall") { w in
            w.field("verdict", l.firewall.verdict.rawValue)
            w.field("rule", l.firewall.rule)
            for (family, v) in l.firewallByFamily {
                w.key(family.rawValue)
                w.beginObject()
                w.field("verdict", v.verdict.rawValue)
                w.field("rule", v.rule)
                w.endObject()
            }
        }
        processes("processes", l.summary.processes)
        strings("executables", l.executables)
        field("banner", l.banner)
        key("tls")
        if let t = l.tls {
            beginObject()
            field("version", t.version)
            field("days_left", t.daysLeft)
            field("not_after", isoTime(t.notAfter))
            field("verified", t.verified)
            field("verify_error", t.verifyError)
            field("subject", t.subject)
            endObject()
        } else {
            null()
        }
        array("findings") { w in
            for f in l.findings { w.auditFinding(f, withPort: false) }
        }
        endObject()
    }

    mutating func auditFinding(_ f: AuditFinding, withPort: Bool) {
        beginObject()
        field("severity", f.severity.rawValue)
        if withPort {
            field("protocol", f.proto.rawValue)
            field("port", f.port)
        }
        field("reason", f.reason)
        endObject()
    }

    mutating func drift(_ d: Drift) {
        beginObject()
        field("baseline", d.source)
        array("new") { w in for l in d.new { w.baselineListener(l) } }
        array("gone") { w in for l in d.gone { w.baselineListener(l) } }
        array("owner_changed") { w in
            for c in d.ownerChanged {
                w.beginObject()
                w.field("protocol", c.proto.rawValue)
                w.field("port", c.port)
                w.strings("before", c.before)
                w.strings("after", c.after)
                w.endObject()
            }
        }
        endObject()
    }

    mutating func baselineListener(_ l: BaselineListener) {
        beginObject()
        field("protocol", l.proto.rawValue)
        field("port", l.port)
        strings("addresses", l.addresses)
        strings("executables", l.executables)
        endObject()
    }
}
