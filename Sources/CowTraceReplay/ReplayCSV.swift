/// CSV for `cowtrace replay --format csv` and `cowtrace check --format csv`:
/// one row per process (replay) or per process and class (check), with a
/// header line. Keys are documented in docs/exports.md and only ever added.

public func renderReplayCSV(_ result: ReplayResult) -> String {
    var out = "pid,comm,copies,reuses,zero_fills,file_copies,shared_writes,other,mib_copied\n"
    for p in result.processes where shownInReplay(p) {
        let m = p.model
        out += ["\(p.pid)", csvField(p.comm), "\(m.copy)", "\(m.reuse)", "\(m.zeroFill)", "\(m.fileCopy)",
                "\(m.sharedWrite)", "\(m.other)", mib(p.modelBytesCopied)].joined(separator: ",") + "\n"
    }
    return out
}

public func renderCheckCSV(_ check: TraceCheck) -> String {
    var out = "pid,comm,class,kernel,model,counters\n"
    for row in check.rows {
        for cls in ReplayClass.tracerCases {
            let counters = row.counters.map { "\($0[cls])" } ?? ""
            out += ["\(row.pid)", csvField(row.comm), cls.description, "\(row.kernel[cls])", "\(row.model[cls])", counters]
                .joined(separator: ",") + "\n"
        }
        // The three kinds of outcome and the wasted copies, a count in the kernel column each.
        for (name, n) in [("agreed", row.agreements), ("evidenced", row.evidenced), ("unexplained", row.unexplained),
                          ("wasted_copies", row.wastedCopies)] {
            out += ["\(row.pid)", csvField(row.comm), name, "\(n)", "", ""].joined(separator: ",") + "\n"
        }
    }
    return out
}

/// RFC 4180: quote a field holding a comma, quote or line break.
func csvField(_ s: String) -> String {
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
