import MMUSim
import CowTraceFormat
import Foundation

// JSON for `cowtrace replay --format json` and `cowtrace check --format json`.
// Keys are snake_case, stable and sorted, with "schema_version": 1 beside the
// older "format" and "version"; docs/replay.md describes every one. Addresses are
// strings ("0x7f0000000000"), times integers (ns of CLOCK_MONOTONIC), class
// names the report's ("copy", "reuse", "zero-fill", "file-copy",
// "shared-write", "other").

/// The replay as one JSON object (format "cowtrace-replay", version 1).
public func renderReplayJSON(_ result: ReplayResult) -> String {
    let s = result.stats
    let doc = ReplayDocument(
        schemaVersion: 1, format: "cowtrace-replay", version: 1,
        kernelRelease: result.header.kernelRelease, hostname: result.header.hostname,
        selection: result.header.selection, faultTier: result.faultTier,
        tierSeesSharedWrites: result.tierSeesSharedWrites,
        processes: result.processes.map { p in
            ProcessJSON(pid: p.pid, comm: p.comm, parent: p.parent, origin: p.origin.rawValue, execs: p.execs,
                        exited: p.exited, exitCode: p.exitCode, writeProtectFaults: p.writeProtectFaults,
                        firstTouchFaults: p.firstTouchFaults, model: CountsJSON(p.model),
                        modelBytesCopied: p.modelBytesCopied)
        },
        totals: CountsJSON(result.modelTotals),
        totalBytesCopied: UInt64(result.modelTotals.copy + result.modelTotals.fileCopy) * 4096,
        stats: StatsJSON(records: s.records, writeProtectFaults: s.writeProtectFaults,
                         firstTouchFaults: s.firstTouchFaults, resolves: s.resolves,
                         unmatchedResolves: s.unmatchedResolves, adoptedProcesses: s.adoptedProcesses,
                         implicitMappings: s.implicitMappings, materializedPages: s.materializedPages,
                         reprotectedPages: s.reprotectedPages, installedPages: s.installedPages,
                         swappedPages: s.swappedPages, addressSpaceOps: s.addressSpaceOps,
                         failedSyscalls: s.failedSyscalls, modelErrors: s.modelErrors,
                         ignoredAdvice: s.ignoredAdvice),
        gaps: result.gaps.map { GapJSON(time: $0.time, reason: lossReasonName($0.reason), lost: $0.lost) },
        lostEvents: s.lostEvents,
        oomKills: result.oomKills.map { OOMKillJSON(time: $0.time, pid: $0.victim, comm: $0.comm) },
        endReason: result.end?.reason,
        notes: result.notes.map { NoteJSON(kind: $0.kind, count: $0.count, example: $0.example) })
    return encodeJSON(doc)
}

/// The check as one JSON object (format "cowtrace-check", version 1).
public func renderCheckJSON(_ check: TraceCheck) -> String {
    let doc = CheckDocument(
        schemaVersion: 1, format: "cowtrace-check", version: 1, faultTier: check.faultTier,
        tierSeesSharedWrites: check.tierSeesSharedWrites,
        processes: check.rows.map { r in
            CheckProcessJSON(pid: r.pid, comm: r.comm, writeProtectFaults: r.writeProtectFaults,
                             kernel: CountsJSON(r.kernel), model: CountsJSON(r.model),
                             counters: r.counters.map(CountsJSON.init), agreements: r.agreements,
                             tierLimitedAgreements: r.tierLimitedAgreements, evidenced: r.evidenced,
                             unexplained: r.unexplained, wastedCopies: r.wastedCopies)
        },
        counters: CountersCheckJSON(
            consistent: check.countersConsistent, explainedByGaps: check.mismatchesExplainedByGaps,
            gapsRecorded: check.gapsRecorded, lostEvents: check.lostEvents,
            mismatches: check.mismatches.map {
                MismatchJSON(pid: $0.pid, comm: $0.comm, field: $0.field, events: $0.events, counters: $0.counters)
            },
            processesWithoutCounters: check.processesWithoutCounters),
        disagreements: check.groups.map { g in
            GroupJSON(pid: g.pid, comm: g.comm, kernelClass: g.kernel.description, modelClass: g.model.description,
                      reason: g.reason.rawValue, count: g.count, examples: g.examples.map(hex),
                      evidenced: g.reason.isEvidenced, wasted_copies: g.wastedCopies)
        },
        agreement: AgreementJSON(agreed: check.agreed, total: check.total,
                                 ratio: (check.ratio * 1_000_000).rounded() / 1_000_000,
                                 threshold: check.threshold, tierLimited: check.tierLimited,
                                 passed: check.agreementPassed, line: agreementLine(check),
                                 evidenced: check.evidenced, unexplained: check.unexplained,
                                 accounted: check.accounted,
                                 accounted_ratio: (check.accountedRatio * 1_000_000).rounded() / 1_000_000,
                                 evidenced_by_reason: Dictionary(uniqueKeysWithValues: check.evidencedByReason.map {
                                     ($0.reason.rawValue, $0.count)
                                 }),
                                 wasted_copies: check.wastedCopies),
        passed: check.passed)
    return encodeJSON(doc)
}

func lossReasonName(_ r: LossReason) -> String {
    switch r {
    case .ringBufferFull: return "ring-buffer-full"
    case .processMapFull: return "process-map-full"
    case .infoMapFull: return "info-map-full"
    default: return "\(r)"
    }
}

func encodeJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    // camelCase property names become snake_case; keys that are not
    // identifiers (the reasons of evidenced_by_reason) are left as they are.
    encoder.keyEncodingStrategy = .custom { path in
        let key = path.last!.stringValue
        guard !key.contains(" ") else { return path.last! }
        return SnakeCaseKey(stringValue: snakeCase(key))
    }
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self) + "\n"
}

struct SnakeCaseKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// "writeProtectFaults" → "write_protect_faults"; "wasted_copies" stays.
func snakeCase(_ key: String) -> String {
    var out = ""
    for c in key {
        if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
    }
    return out
}

struct CountsJSON: Encodable {
    var copy, reuse, zeroFill, fileCopy, sharedWrite, other, total: Int
    init(_ c: ClassCounts) {
        copy = c.copy; reuse = c.reuse; zeroFill = c.zeroFill; fileCopy = c.fileCopy
        sharedWrite = c.sharedWrite; other = c.other; total = c.total
    }
}

struct ReplayDocument: Encodable {
    var schemaVersion: Int
    var format: String
    var version: Int
    var kernelRelease: String
    var hostname: String
    var selection: String
    var faultTier: String
    var tierSeesSharedWrites: Bool
    var processes: [ProcessJSON]
    var totals: CountsJSON
    var totalBytesCopied: UInt64
    var stats: StatsJSON
    var gaps: [GapJSON]
    var lostEvents: UInt64
    var oomKills: [OOMKillJSON]
    var endReason: String?
    var notes: [NoteJSON]

    // Optional values are written as null, not left out: every key is always there.
    enum CodingKeys: String, CodingKey {
        case schemaVersion, format, version, kernelRelease, hostname, selection, faultTier, tierSeesSharedWrites
        case processes, totals, totalBytesCopied, stats, gaps, lostEvents, oomKills, endReason, notes
    }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(schemaVersion, forKey: .schemaVersion)
        try c.encode(format, forKey: .format)
        try c.encode(version, forKey: .version)
        try c.encode(kernelRelease, forKey: .kernelRelease)
        try c.encode(hostname, forKey: .hostname)
        try c.encode(selection, forKey: .selection)
        try c.encode(faultTier, forKey: .faultTier)
        try c.encode(tierSeesSharedWrites, forKey: .tierSeesSharedWrites)
        try c.encode(processes, forKey: .processes)
        try c.encode(totals, forKey: .totals)
        try c.encode(totalBytesCopied, forKey: .totalBytesCopied)
        try c.encode(stats, forKey: .stats)
        try c.encode(gaps, forKey: .gaps)
        try c.encode(lostEvents, forKey: .lostEvents)
        try c.encode(oomKills, forKey: .oomKills)
        try c.encode(endReason, forKey: .endReason)
        try c.encode(notes, forKey: .notes)
    }
}

struct ProcessJSON: Encodable {
    var pid: Int32
    var comm: String
    var parent: Int32?
    var origin: String
    var execs: Int
    var exited: Bool
    var exitCode: UInt32?
    var writeProtectFaults: Int
    var firstTouchFaults: Int
    var model: CountsJSON
    var modelBytesCopied: UInt64

    enum CodingKeys: String, CodingKey {
        case pid, comm, parent, origin, execs, exited, exitCode, writeProtectFaults, firstTouchFaults, model, modelBytesCopied
    }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pid, forKey: .pid)
        try c.encode(comm, forKey: .comm)
        try c.encode(parent, forKey: .parent)
        try c.encode(origin, forKey: .origin)
        try c.encode(execs, forKey: .execs)
        try c.encode(exited, forKey: .exited)
        try c.encode(exitCode, forKey: .exitCode)
        try c.encode(writeProtectFaults, forKey: .writeProtectFaults)
        try c.encode(firstTouchFaults, forKey: .firstTouchFaults)
        try c.encode(model, forKey: .model)
        try c.encode(modelBytesCopied, forKey: .modelBytesCopied)
    }
}

struct StatsJSON: Encodable {
    var records, writeProtectFaults, firstTouchFaults, resolves, unmatchedResolves, adoptedProcesses: Int
    var implicitMappings, materializedPages, reprotectedPages, installedPages, swappedPages: Int
    var addressSpaceOps, failedSyscalls, modelErrors, ignoredAdvice: Int
}

struct GapJSON: Encodable {
    var time: UInt64
    var reason: String
    var lost: UInt64
}

struct OOMKillJSON: Encodable {
    var time: UInt64
    var pid: Int32
    var comm: String
}

struct NoteJSON: Encodable {
    var kind: String
    var count: Int
    var example: String
}

struct CheckDocument: Encodable {
    var schemaVersion: Int
    var format: String
    var version: Int
    var faultTier: String
    var tierSeesSharedWrites: Bool
    var processes: [CheckProcessJSON]
    var counters: CountersCheckJSON
    var disagreements: [GroupJSON]
    var agreement: AgreementJSON
    var passed: Bool
}

struct CheckProcessJSON: Encodable {
    var pid: Int32
    var comm: String
    var writeProtectFaults: Int
    var kernel: CountsJSON
    var model: CountsJSON
    var counters: CountsJSON?
    var agreements: Int
    var tierLimitedAgreements: Int
    var evidenced: Int
    var unexplained: Int
    var wastedCopies: Int

    enum CodingKeys: String, CodingKey {
        case pid, comm, writeProtectFaults, kernel, model, counters, agreements, tierLimitedAgreements
        case evidenced, unexplained, wastedCopies = "wasted_copies"
    }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pid, forKey: .pid)
        try c.encode(comm, forKey: .comm)
        try c.encode(writeProtectFaults, forKey: .writeProtectFaults)
        try c.encode(kernel, forKey: .kernel)
        try c.encode(model, forKey: .model)
        try c.encode(counters, forKey: .counters)
        try c.encode(agreements, forKey: .agreements)
        try c.encode(tierLimitedAgreements, forKey: .tierLimitedAgreements)
        try c.encode(evidenced, forKey: .evidenced)
        try c.encode(unexplained, forKey: .unexplained)
        try c.encode(wastedCopies, forKey: .wastedCopies)
    }
}

struct CountersCheckJSON: Encodable {
    var consistent: Bool
    var explainedByGaps: Bool
    var gapsRecorded: Int
    var lostEvents: UInt64
    var mismatches: [MismatchJSON]
    var processesWithoutCounters: [Int32]
}

struct MismatchJSON: Encodable {
    var pid: Int32
    var comm: String
    var field: String
    var events: Int
    var counters: Int
}

struct GroupJSON: Encodable {
    var pid: Int32
    var comm: String
    var kernelClass: String
    var modelClass: String
    var reason: String
    var count: Int
    var examples: [String]
    /// Whether the recording shows the evidence for the reason (else the group is unexplained).
    var evidenced: Bool
    var wasted_copies: Int
}

struct AgreementJSON: Encodable {
    var agreed: Int
    var total: Int
    var ratio: Double
    var threshold: Double
    var tierLimited: Int
    var passed: Bool
    var line: String
    /// Disagreements with evidence for their reason; `passed` compares agreed + evidenced with the threshold.
    var evidenced: Int
    var unexplained: Int
    var accounted: Int
    var accounted_ratio: Double
    var evidenced_by_reason: [String: Int]
    var wasted_copies: Int
}
