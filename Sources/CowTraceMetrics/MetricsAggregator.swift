import CowTraceKit
import Foundation

/// What a series of `cowtrace serve` is keyed by (`--group-by`).
public enum MetricsGrouping: String, CaseIterable, Sendable {
    /// The process's cgroup (v2 path, or the v1 memory controller's), with
    /// container_id and pod_uid where the path names them. The default.
    case cgroup
    /// The process's command name when first seen.
    case comm
    /// One series per process, for the --top processes (one-host debugging).
    case pid
}

/// A recent copying process of a series, carried as an OpenMetrics exemplar
/// on its copy counter: the process's copied bytes when seen copying.
public struct MetricsExemplar: Equatable, Sendable {
    public var pid: Int32
    public var comm: String
    public var copiedBytes: UInt64
    /// Unix seconds of the scrape that saw it copy.
    public var timestamp: Double
}

/// One labelled set of series: a group's (or a process's) counters and histograms.
public struct MetricsSubject: Sendable {
    public var labels: [(String, String)]
    public var counters: ProcessCounters
    public var histograms: [HistogramKind: Log2Histogram]
    /// Unix seconds when the series were first exported (OpenMetrics `_created`).
    public var created: Double
    public var exemplar: MetricsExemplar?
}

/// The series of one exposition, and how many processes or groups they fold.
public struct MetricsSeries: Sendable {
    public var grouping: MetricsGrouping
    public var subjects: [MetricsSubject]
    /// --group-by pid: processes summed into pid="other".
    public var aggregatedProcesses: Int
    /// --group-by cgroup|comm: groups with series of their own (other excluded).
    public var groups: Int
}

/// Turns successive snapshots into series whose counters never decrease.
///
/// cgroup and comm: a process's group is resolved once, when first seen, and
/// kept (a process that moves cgroups keeps its counts in its first group).
/// When it exits (or leaves the kernel's maps) its final counts fold into its
/// group and it is forgotten, so a scrape costs the live processes plus the
/// groups. The first `maxGroups` groups get series of their own; every later
/// one is summed into the `other` group, for good.
///
/// pid: the `top` processes with the most pages copied get series of their
/// own, the rest are summed into pid="other". What other counted of a process
/// stays counted when the process rises into the top, so other never
/// decreases either (during a re-ranking, other plus the top can count a
/// process's earlier copies twice).
public final class MetricsAggregator {
    public let grouping: MetricsGrouping
    public let top: Int
    public let maxGroups: Int
    public static let defaultMaxGroups = 200
    /// The group of a process seen for the first time: by default its cgroup
    /// from /proc (its parent's when it is gone already) or its comm.
    private let resolve: (Int32, ProcessIdentity?) -> ProcessCgroup?
    private let clock: () -> Double

    public init(grouping: MetricsGrouping = .cgroup, top: Int = MetricsExposition.defaultTop,
                maxGroups: Int = MetricsAggregator.defaultMaxGroups,
                clock: @escaping () -> Double = { Date().timeIntervalSince1970 },
                resolveCgroup: ((Int32) -> ProcessCgroup?)? = nil) {
        precondition(top >= 0 && maxGroups >= 0)
        self.grouping = grouping
        self.top = top
        self.maxGroups = maxGroups
        self.clock = clock
        let read = resolveCgroup ?? { ProcessCgroup.read(pid: $0, version: ProcessCgroup.hostVersion) }
        self.resolve = { pid, _ in read(pid) }
        created = clock()
    }

    /// When the aggregator started (OpenMetrics `_created` of unlabelled counters).
    public let created: Double

    // MARK: groups

    private struct Group {
        var labels: [(String, String)]
        var retired = ProcessCounters()
        var retiredHistograms: [HistogramKind: Log2Histogram] = [:]
        var created: Double
        var exemplar: MetricsExemplar?
    }

    private struct Live {
        var group: Int
        var start: UInt64
        var counters: ProcessCounters
    }

    private var groups: [Group] = []
    private var groupIndex: [String: Int] = [:]
    private var otherGroup: Int?
    private var live: [Int32: Live] = [:]
    /// Exited processes already folded, by start time (a snapshot may show one twice).
    private var folded: [Int32: UInt64] = [:]

    private func groupIndex(key: String, labels: @autoclosure () -> [(String, String)], now: Double) -> Int {
        if let i = groupIndex[key] { return i }
        if groups.count - (otherGroup == nil ? 0 : 1) >= maxGroups {
            if let o = otherGroup { return o }
            otherGroup = groups.count
            groups.append(Group(labels: [(grouping.rawValue, "other")], created: now))
            return otherGroup!
        }
        groupIndex[key] = groups.count
        groups.append(Group(labels: labels(), created: now))
        return groups.count - 1
    }

    /// Groups resolved during this update, also of processes not live (siblings share their parent's).
    private var resolvedThisUpdate: [Int32: Int] = [:]

    private func group(of pid: Int32, _ info: ProcessIdentity?, _ infos: [Int32: ProcessIdentity], now: Double, depth: Int = 0) -> Int {
        switch grouping {
        case .comm:
            let comm = info?.comm ?? ""
            return groupIndex(key: comm, labels: [("comm", comm)], now: now)
        default:
            if let l = live[pid] { return l.group }
            if let g = resolvedThisUpdate[pid] { return g }
            let g: Int
            if let c = resolve(pid, info) {
                var labels = [("cgroup", c.path)]
                if let id = c.containerID { labels.append(("container_id", id)) }
                if let uid = c.podUID { labels.append(("pod_uid", uid)) }
                g = groupIndex(key: c.path, labels: labels, now: now)
            } else if let ppid = info?.ppid, ppid > 0, ppid != pid, depth < 16 {
                // Gone already (exited between scrapes): the group of the
                // nearest ancestor still known, where it was forked.
                g = group(of: ppid, infos[ppid], infos, now: now, depth: depth + 1)
            } else {
                g = groupIndex(key: "unknown", labels: [("cgroup", "unknown")], now: now)
            }
            resolvedThisUpdate[pid] = g
            return g
        }
    }

    private static func copied(_ c: ProcessCounters) -> UInt64 { c.copies &+ c.fileCopies }

    private func updateGroups(_ m: MetricsSnapshot, now: Double) -> MetricsSeries {
        let s = m.snapshot
        var histograms: [Int32: [HistogramKind: Log2Histogram]] = [:]
        for h in m.histograms { histograms[h.pid] = h.histograms }
        var totals = groups.map { $0.retired }
        var best = [Int: (delta: UInt64, exemplar: MetricsExemplar)]()

        func note(_ g: Int, pid: Int32, comm: String, before: ProcessCounters, after: ProcessCounters) {
            let delta = Self.copied(after) &- min(Self.copied(before), Self.copied(after))
            guard delta > 0, delta > (best[g]?.delta ?? 0) else { return }
            best[g] = (delta, MetricsExemplar(pid: pid, comm: comm, copiedBytes: Self.copied(after) &* m.pageSize, timestamp: now))
        }
        func fold(_ l: Live, histograms h: [HistogramKind: Log2Histogram]?, counted: Bool = false) {
            if l.group >= totals.count { totals += Array(repeating: ProcessCounters(), count: l.group + 1 - totals.count) }
            if !counted { totals[l.group] = totals[l.group] + l.counters }
            groups[l.group].retired = groups[l.group].retired + l.counters
            for (kind, v) in h ?? [:] { groups[l.group].retiredHistograms[kind, default: Log2Histogram()] += v }
        }

        // The live processes' groups as they were before this update: a
        // process gone already finds its parent's even if the parent exits in it.
        resolvedThisUpdate = live.mapValues(\.group)
        defer { resolvedThisUpdate = [:] }
        var seen = Set<Int32>()
        seen.reserveCapacity(s.counters.count)
        var liveGroupOf: [Int32: Int] = [:]
        for (pid, c) in s.counters {
            seen.insert(pid)
            let info = s.info[pid]
            let start = info?.startNanoseconds ?? 0
            if info?.exited == true, folded[pid] == start { continue }
            var previous = live[pid]
            if let p = previous, p.start != start || Self.copied(c) < Self.copied(p.counters) {
                fold(p, histograms: nil) // pid reused: the earlier process ends here
                live[pid] = nil
                previous = nil
            }
            let g = previous?.group ?? group(of: pid, info, s.info, now: now)
            note(g, pid: pid, comm: info?.comm ?? "", before: previous?.counters ?? ProcessCounters(), after: c)
            let l = Live(group: g, start: start, counters: c)
            if info?.exited == true {
                live[pid] = nil
                folded[pid] = start
                fold(l, histograms: histograms[pid])
            } else {
                live[pid] = l
                liveGroupOf[pid] = g
                if g >= totals.count { totals += Array(repeating: ProcessCounters(), count: g + 1 - totals.count) }
                totals[g] = totals[g] + c
            }
        }
        // Gone from the kernel's maps without an exit seen: their last counts stay.
        for (pid, l) in live where !seen.contains(pid) {
            fold(l, histograms: nil)
            live[pid] = nil
        }
        for pid in folded.keys where !seen.contains(pid) { folded[pid] = nil }

        var subjects: [MetricsSubject] = []
        subjects.reserveCapacity(groups.count)
        var groupHistograms = groups.map { $0.retiredHistograms }
        for (pid, g) in liveGroupOf {
            for (kind, v) in histograms[pid] ?? [:] { groupHistograms[g][kind, default: Log2Histogram()] += v }
        }
        if groups.count > totals.count { totals += Array(repeating: ProcessCounters(), count: groups.count - totals.count) }
        for i in groups.indices {
            if let b = best[i] { groups[i].exemplar = b.exemplar }
            subjects.append(MetricsSubject(labels: groups[i].labels, counters: totals[i], histograms: groupHistograms[i],
                                           created: groups[i].created, exemplar: groups[i].exemplar))
        }
        return MetricsSeries(grouping: grouping, subjects: subjects, aggregatedProcesses: 0,
                             groups: groups.count - (otherGroup == nil ? 0 : 1))
    }

    // MARK: pid

    /// What pid="other" counted of each process, and of processes gone.
    private var otherContribution: [Int32: (counters: ProcessCounters, histograms: [HistogramKind: Log2Histogram])] = [:]
    private var otherGone = ProcessCounters()
    private var otherGoneHistograms: [HistogramKind: Log2Histogram] = [:]
    private var otherCreated: Double?
    private var pidCreated: [Int32: Double] = [:]
    private var lastCopied: [Int32: UInt64] = [:]

    private func updatePids(_ m: MetricsSnapshot, now: Double) -> MetricsSeries {
        let table = ProcessTable(snapshot: m.snapshot, tier: m.tier, pageSize: m.pageSize)
        var histograms: [Int32: [HistogramKind: Log2Histogram]] = [:]
        for p in m.histograms where p.histograms.values.contains(where: { h in h.buckets.contains { $0 > 0 } }) {
            histograms[p.pid] = p.histograms
        }
        var subjects: [MetricsSubject] = []
        var own = Set<Int32>()
        for row in table.rows.prefix(top) {
            own.insert(row.pid)
            let created = pidCreated[row.pid] ?? now
            pidCreated[row.pid] = created
            var exemplar: MetricsExemplar?
            if Self.copied(row.counters) > 0 {
                exemplar = MetricsExemplar(pid: row.pid, comm: row.comm, copiedBytes: Self.copied(row.counters) &* m.pageSize,
                                           timestamp: now)
            }
            subjects.append(MetricsSubject(labels: [("pid", "\(row.pid)"), ("comm", row.comm)], counters: row.counters,
                                           histograms: histograms[row.pid] ?? [:], created: created, exemplar: exemplar))
        }
        var aggregated = Set<Int32>()
        var otherExemplar: (delta: UInt64, MetricsExemplar)?
        for row in table.rows.dropFirst(top) {
            aggregated.insert(row.pid)
            let before = lastCopied[row.pid] ?? 0
            if Self.copied(row.counters) > before, Self.copied(row.counters) - before > (otherExemplar?.delta ?? 0) {
                otherExemplar = (Self.copied(row.counters) - before,
                                 MetricsExemplar(pid: row.pid, comm: row.comm, copiedBytes: Self.copied(row.counters) &* m.pageSize, timestamp: now))
            }
            if let old = otherContribution[row.pid], Self.copied(row.counters) < Self.copied(old.counters) {
                otherGone = otherGone + old.counters // pid reused
                for (k, v) in old.histograms { otherGoneHistograms[k, default: Log2Histogram()] += v }
            }
            otherContribution[row.pid] = (row.counters, histograms[row.pid] ?? [:])
        }
        let rowPids = Set(table.rows.map(\.pid))
        for (pid, h) in histograms where !rowPids.contains(pid) {
            aggregated.insert(pid)
            otherContribution[pid, default: (ProcessCounters(), [:])].histograms = h
        }
        for row in table.rows { lastCopied[row.pid] = Self.copied(row.counters) }
        // Processes no longer in any snapshot: what other counted of them stays.
        for (pid, c) in otherContribution where m.snapshot.counters[pid] == nil && histograms[pid] == nil {
            otherGone = otherGone + c.counters
            for (k, v) in c.histograms { otherGoneHistograms[k, default: Log2Histogram()] += v }
            otherContribution[pid] = nil
        }
        for pid in pidCreated.keys where m.snapshot.counters[pid] == nil { pidCreated[pid] = nil; lastCopied[pid] = nil }
        if !aggregated.isEmpty || otherCreated != nil {
            var counters = otherGone
            var h = otherGoneHistograms
            for c in otherContribution.values {
                counters = counters + c.counters
                for (k, v) in c.histograms { h[k, default: Log2Histogram()] += v }
            }
            let created = otherCreated ?? now
            otherCreated = created
            if let e = otherExemplar { otherLastExemplar = e.1 }
            subjects.append(MetricsSubject(labels: [("pid", "other")], counters: counters, histograms: h, created: created,
                                           exemplar: otherLastExemplar))
        }
        return MetricsSeries(grouping: .pid, subjects: subjects, aggregatedProcesses: aggregated.count, groups: 0)
    }
    private var otherLastExemplar: MetricsExemplar?

    /// The series of this snapshot. Call with successive snapshots of one source.
    public func update(_ m: MetricsSnapshot) -> MetricsSeries {
        let now = clock()
        return grouping == .pid ? updatePids(m, now: now) : updateGroups(m, now: now)
    }
}
