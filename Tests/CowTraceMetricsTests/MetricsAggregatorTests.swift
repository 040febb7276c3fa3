import CowTraceKit
import CowTraceMetrics
import Foundation
import XCTest

/// Series keyed by group: folding at exit, counters that never decrease, the
/// --max-groups bound, first-seen cgroups, exemplars and the OpenMetrics text.
final class MetricsAggregatorTests: XCTestCase {
    private func copies(_ n: UInt64) -> ProcessCounters {
        var c = ProcessCounters()
        c.copies = n
        c.writeProtectFaults = n
        return c
    }

    private func identity(_ comm: String, exited: Bool = false, start: UInt64 = 1) -> ProcessIdentity {
        var i = ProcessIdentity(ppid: 1, comm: comm)
        i.exited = exited
        i.startNanoseconds = start
        return i
    }

    private func snapshot(_ processes: [Int32: (UInt64, Bool)]) -> MetricsSnapshot {
        var counters: [Int32: ProcessCounters] = [:]
        var info: [Int32: ProcessIdentity] = [:]
        for (pid, p) in processes {
            counters[pid] = copies(p.0)
            info[pid] = identity("p\(pid)", exited: p.1)
        }
        return MetricsSnapshot(snapshot: TraceSnapshot(counters: counters, info: info, drops: DropCounts()), histograms: [],
                               tier: .tracepoint, pageSize: 4096, kernelRelease: "test", version: "0")
    }

    private func copiesByGroup(_ s: MetricsSeries) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for subject in s.subjects { out[subject.labels.first!.1] = subject.counters.copies }
        return out
    }

    func testExitedProcessesFoldIntoTheirGroupAndNothingDecreases() {
        var cgroups: [Int32: String] = [1: "/a", 2: "/a", 3: "/b"]
        var calls = 0
        let a = MetricsAggregator(grouping: .cgroup, resolveCgroup: { pid in
            calls += 1
            return cgroups[pid].map { ProcessCgroup(path: $0) }
        })
        XCTAssertEqual(copiesByGroup(a.update(snapshot([1: (10, false), 2: (5, false), 3: (7, false)]))), ["/a": 15, "/b": 7])
        XCTAssertEqual(copiesByGroup(a.update(snapshot([1: (11, false), 2: (8, true), 3: (7, false)]))), ["/a": 19, "/b": 7])
        // Pid 2 is forgotten by the kernel; pid 1 moves to /b: its counts stay in /a.
        cgroups[1] = "/b"
        XCTAssertEqual(copiesByGroup(a.update(snapshot([1: (12, false), 3: (9, false)]))), ["/a": 20, "/b": 9])
        // Both exit and vanish: their groups' series stay, at their last values.
        XCTAssertEqual(copiesByGroup(a.update(snapshot([1: (12, true), 3: (9, true)]))), ["/a": 20, "/b": 9])
        XCTAssertEqual(copiesByGroup(a.update(snapshot([:]))), ["/a": 20, "/b": 9])
        XCTAssertEqual(calls, 3, "each pid's cgroup is read once, when first seen")
    }

    func testMaxGroupsSumsLaterGroupsIntoOtherForGood() {
        let a = MetricsAggregator(grouping: .cgroup, maxGroups: 2, resolveCgroup: { ProcessCgroup(path: "/g\($0)") })
        var previous: [String: UInt64] = [:]
        var series = 0
        let rounds: [[Int32: (UInt64, Bool)]] = [
            [1: (1, false), 2: (2, false)],
            [1: (3, false), 2: (2, false), 3: (100, false), 4: (1, false)],
            [1: (3, false), 3: (150, true), 4: (2, false), 5: (9, false)],
            [1: (4, false), 4: (2, true)],
            [1: (4, false)],
        ]
        for r in rounds {
            let s = a.update(snapshot(r))
            let now = copiesByGroup(s)
            for (group, v) in previous { XCTAssertGreaterThanOrEqual(now[group] ?? 0, v, "\(group) decreased: \(previous) -> \(now)") }
            previous = now
            series = max(series, s.subjects.count)
            XCTAssertLessThanOrEqual(s.groups, 2)
        }
        XCTAssertEqual(previous, ["/g1": 4, "/g2": 2, "other": 161])
        XCTAssertEqual(series, 3, "two groups and other")
        // A later process of a group with its own series still lands there.
        XCTAssertEqual(copiesByGroup(a.update(snapshot([2: (1, false)].merging([1: (4, false)]) { x, _ in x })))["/g2"], 3, "pid 2 again: a new process of /g2")
    }

    func testCommGroupsAndContainerLabels() {
        let id = String(repeating: "ab", count: 32)
        let a = MetricsAggregator(grouping: .cgroup, resolveCgroup: { _ in ProcessCgroup(path: "/system.slice/docker-\(id).scope") })
        let s = a.update(snapshot([1: (1, false)]))
        XCTAssertEqual(s.subjects.first?.labels.map { "\($0.0)=\($0.1)" },
                       ["cgroup=/system.slice/docker-\(id).scope", "container_id=\(id)"])
        let c = MetricsAggregator(grouping: .comm)
        XCTAssertEqual(copiesByGroup(c.update(snapshot([1: (1, false), 2: (2, false)]))), ["p1": 1, "p2": 2])
    }

    func testAGoneProcessFallsBackToItsParentsGroup() {
        let a = MetricsAggregator(grouping: .cgroup, resolveCgroup: { $0 == 1 ? ProcessCgroup(path: "/parent") : nil })
        XCTAssertEqual(copiesByGroup(a.update(snapshot([7: (5, true)]))), ["/parent": 5], "ppid is 1 in these identities")
        // Parent and child both gone: the grandparent's group.
        var m = snapshot([7: (1, true), 8: (4, true)])
        m.snapshot.info[8]!.ppid = 7
        XCTAssertEqual(copiesByGroup(a.update(m)), ["/parent": 9], "pid 7 was folded already (same start): only pid 8 adds")
        // The parent exits in the same snapshot as its child, both gone from /proc:
        // the child still gets the group the parent had (whatever the order they are folded in).
        for _ in 0..<20 {
            var alive = true
            let b = MetricsAggregator(grouping: .cgroup, resolveCgroup: { pid in
                pid == 5 && alive ? ProcessCgroup(path: "/sub") : pid == 1 ? ProcessCgroup(path: "/top") : nil
            })
            _ = b.update(snapshot([5: (1, false)]))
            alive = false
            var both = snapshot([5: (2, true), 9: (30, true), 10: (40, true), 11: (50, true)])
            for child in [9, 10, 11] as [Int32] { both.snapshot.info[child]!.ppid = 5 }
            XCTAssertEqual(copiesByGroup(b.update(both)), ["/sub": 122])
        }
        let lost = MetricsAggregator(grouping: .cgroup, resolveCgroup: { _ in nil })
        XCTAssertEqual(copiesByGroup(lost.update(snapshot([7: (5, true)]))), ["unknown": 5])
    }

    func testPidOtherNeverDecreasesWhenAProcessRisesIntoTheTop() {
        let a = MetricsAggregator(grouping: .pid, top: 1)
        let first = copiesByGroup(a.update(snapshot([1: (10, false), 2: (5, false)])))
        XCTAssertEqual(first, ["1": 10, "other": 5])
        let second = copiesByGroup(a.update(snapshot([1: (10, false), 2: (20, false)])))
        XCTAssertEqual(second["2"], 20)
        XCTAssertGreaterThanOrEqual(second["other"]!, first["other"]!, "\(first) -> \(second)")
        XCTAssertEqual(second["other"], 15, "pid 2's earlier 5 stays, pid 1's 10 joins")
        let third = copiesByGroup(a.update(snapshot([2: (20, false)])))
        XCTAssertEqual(third["other"], 15, "pid 1 gone: what other counted of it stays")
    }

    func testExemplarIsARecentCopierOfTheGroup() throws {
        var clock = 1_700_000_000.0
        let a = MetricsAggregator(grouping: .cgroup, clock: { clock }, resolveCgroup: { _ in ProcessCgroup(path: "/a") })
        _ = a.update(snapshot([1: (10, false), 2: (1, false)]))
        clock += 5
        let s = a.update(snapshot([1: (10, false), 2: (4, false)]))
        let e = try XCTUnwrap(s.subjects.first?.exemplar)
        XCTAssertEqual(e.pid, 2, "pid 2 copied since the last scrape, pid 1 did not")
        XCTAssertEqual(e.copiedBytes, 4 * 4096)
        XCTAssertEqual(e.timestamp, clock)
    }

    func testOpenMetricsText() throws {
        let a = MetricsAggregator(grouping: .cgroup, clock: { 1_700_000_000.5 }, resolveCgroup: { _ in ProcessCgroup(path: "/a") })
        var m = snapshot([42: (3, false)])
        m.burstIntervalNanoseconds = 100_000_000
        var burst = Log2Histogram()
        burst.buckets[2] = 1
        burst.count = 1
        burst.sum = 3
        m.histograms = [ProcessHistograms(pid: 42, comm: "p42", histograms: [.copiesPerInterval: burst])]
        let text = MetricsExposition().render(a.update(m), m, format: .openMetrics, created: 1_700_000_000)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.last, "# EOF")
        XCTAssertTrue(text.hasSuffix("# EOF\n"))
        for expected in [
            "# TYPE cowtrace_copied_bytes counter",
            "# UNIT cowtrace_copied_bytes bytes",
            "cowtrace_copied_bytes_total{cgroup=\"/a\"} 12288 # {pid=\"42\",comm=\"p42\"} 12288 1700000000.500",
            "cowtrace_copied_bytes_created{cgroup=\"/a\"} 1700000000.5",
            "# TYPE cowtrace_write_protect_faults counter",
            "cowtrace_write_protect_faults_total{cgroup=\"/a\",class=\"copy\"} 3",
            "cowtrace_dropped_events_total{reason=\"ring_buffer_full\"} 0",
            "cowtrace_dropped_processes_total{reason=\"process_map_full\"} 0",
            "cowtrace_dropped_processes_created{reason=\"process_map_full\"} 1700000000",
            "# TYPE cowtrace_copies_per_interval_seconds gauge",
            "# UNIT cowtrace_copies_per_interval_seconds seconds",
            "cowtrace_copies_per_interval_seconds 0.1",
            "# TYPE cowtrace_copies_per_interval histogram",
            "cowtrace_copies_per_interval_count{cgroup=\"/a\"} 1",
            "cowtrace_copies_per_interval_created{cgroup=\"/a\"} 1700000000.5",
            "# TYPE cowtrace info",
            "cowtrace_groups 1",
        ] {
            XCTAssertTrue(lines.contains(expected), "missing \(expected) in:\n\(text)")
        }
        XCTAssertFalse(lines.contains { $0.hasPrefix("# TYPE") && $0.contains("_total ") }, "family names drop _total")
        // The default text format has none of it.
        let plain = MetricsExposition().render(a.update(m), m, format: .text, created: 0)
        XCTAssertFalse(plain.contains("# EOF") || plain.contains("_created") || plain.contains("# UNIT") || plain.contains(" # {"), plain)
        XCTAssertTrue(plain.contains("cowtrace_copied_bytes_total{cgroup=\"/a\"} 12288\n"), plain)
    }

    func testAcceptHeaderNegotiation() {
        XCTAssertEqual(ExpositionFormat(accept: nil), .text)
        XCTAssertEqual(ExpositionFormat(accept: "text/plain"), .text)
        XCTAssertEqual(ExpositionFormat(accept: "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), .openMetrics)
        XCTAssertEqual(ExpositionFormat(accept: "application/openmetrics-text; q=0, text/plain"), .text)
        XCTAssertEqual(ExpositionFormat.openMetrics.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    }
}
