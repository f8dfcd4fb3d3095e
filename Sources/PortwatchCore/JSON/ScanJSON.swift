extension JSONWriter {
    /// The `scan --json` document: `{"targets": [...], "complete", "seconds"}`.
    public mutating func scanReport(_ report: ScanReport, listing: ScanListing) {
        beginObject()
        array("targets") { w in
            for host in report.hosts { w.scanHost(host, listing: listing) }
        }
        field("complete", report.complete)
        field("seconds", double: report.seconds)
        endObject()
    }

    /// One target: `{"host", "address", "ports", "counts", "seconds", ...}`.
    public mutating func scanHost(_ host: ScanHostResult, listing: ScanListing) {
        beginObject()
        field("host", host.host)
        field("address", host.address.description)
        array("ports") { w in
            for p in listing.rows(host) {
                w.beginObject()
                w.field("protocol", p.proto.rawValue)
                w.field("port", p.port)
                w.field("state", p.state.rawValue)
                w.field("service", p.service)
                w.key("rtt_ms")
                if let rtt = p.rtt { w.double((rtt * 1_000_000).rounded() / 1000) } else { w.null() }
                w.field("banner", p.banner)
                w.field("reason", p.reason)
                w.field("attempts", p.attempts)
                w.endObject()
            }
        }
        object("counts") { w in
            w.field("open", host.counts.open)
            w.field("closed", host.counts.closed)
            w.field("filtered", host.counts.filtered)
            w.field("open|filtered", host.counts.openFiltered)
        }
        field("seconds", double: (host.seconds * 1000).rounded() / 1000)
        key("srtt_ms")
        if let s = host.smoothedRTT { double((s * 1_000_000).rounded() / 1000) } else { null() }
        field("icmp_rate_limited", host.icmpRateLimited)
        endObject()
    }
}
