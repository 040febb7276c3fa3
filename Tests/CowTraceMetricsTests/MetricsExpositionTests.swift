import CowTraceKit
import CowTraceMetrics
import Foundation
import XCTest

/// The Prometheus text exposition: exact text, escaping, the top-N rule and
/// histogram invariants.
final class MetricsExpositionTests: XCTestCase {
    private func counters(copies: UInt64, reuses: UInt64 = 0, zeroFills: UInt64 = 0, fileCopies: UInt64 = 0,
                          sharedWrites: UInt64 = 0, forks: UInt64 = 0, execs: UInt64 = 0) -> ProcessCounters {
        var c = ProcessCounters()
        c.copies = copies
        c.zeroFills = zeroFills
        c.fileCopies = fileCopies
        c.sharedWrites = sharedWrites
        c.writeProtectFaults = copies + reuses + zeroFills + fileCopies + sharedWrites
        c.forks = forks
        c.execs = execs
        return c
    }

    private func histogram(_ counts: [Int: UInt64], sum: UInt64) -> Log2Histogram {
        var h = Log2Histogram()
        for (i, c) in counts { h.buckets[i] = c }
        h.count = counts.values.reduce(0, +)
        h.sum = sum
        return h
    }

    private func metrics(_ snapshot: TraceSnapshot, _ histograms: [ProcessHistograms] = [], tier: AttachTier = .tracepoint,
                         bpfStatsEnabled: Bool? = nil) -> MetricsSnapshot {
        MetricsSnapshot(snapshot: snapshot, histograms: histograms, tier: tier, pageSize: 4096,
                        kernelRelease: "6.18.0-test", version: "0.1.0", bpfStatsEnabled: bpfStatsEnabled)
    }

    func testExactTextForASmallSnapshot() {
        var child = ProcessIdentity(ppid: 10, comm: "child")
        child.exited = true
        var drops = DropCounts()
        drops.ringBufferFull = 2
        let snapshot = TraceSnapshot(
            counters: [10: counters(copies: 40, reuses: 50, zeroFills: 10, forks: 1),
                       11: counters(copies: 300, fileCopies: 2, execs: 1)],
            info: [10: ProcessIdentity(ppid: 1, comm: "parent"), 11: child],
            drops: drops,
            programs: [BPFProgramStatistics(name: "tp_page_fault_user", id: 31, runs: 1000, runNanoseconds: 75_000)])
        let histograms = [ProcessHistograms(pid: 11, comm: "child", histograms: [
            .copiesPerInterval: histogram([2: 1, 4: 3], sum: 70),
            .copyLatency: histogram([9: 2, 10: 1], sum: 2000),
        ])]
        let text = MetricsExposition(top: 50).render(metrics(snapshot, histograms, bpfStatsEnabled: true))
        XCTAssertEqual(text, """
            # HELP cowtrace_write_protect_faults_total Write-protect faults by process and class: copy (page copied after fork), reuse (page was exclusive), zero_fill, file_copy (MAP_PRIVATE file page copied), shared_write. Unit: faults.
            # TYPE cowtrace_write_protect_faults_total counter
            cowtrace_write_protect_faults_total{pid="11",comm="child",class="copy"} 300
            cowtrace_write_protect_faults_total{pid="11",comm="child",class="reuse"} 0
            cowtrace_write_protect_faults_total{pid="11",comm="child",class="zero_fill"} 0
            cowtrace_write_protect_faults_total{pid="11",comm="child",class="file_copy"} 2
            cowtrace_write_protect_faults_total{pid="11",comm="child",class="shared_write"} 0
            cowtrace_write_protect_faults_total{pid="10",comm="parent",class="copy"} 40
            cowtrace_write_protect_faults_total{pid="10",comm="parent",class="reuse"} 50
            cowtrace_write_protect_faults_total{pid="10",comm="parent",class="zero_fill"} 10
            cowtrace_write_protect_faults_total{pid="10",comm="parent",class="file_copy"} 0
            cowtrace_write_protect_faults_total{pid="10",comm="parent",class="shared_write"} 0
            # HELP cowtrace_copied_bytes_total Bytes copied by copy-on-write faults (anonymous and MAP_PRIVATE file copies), in bytes.
            # TYPE cowtrace_copied_bytes_total counter
            cowtrace_copied_bytes_total{pid="11",comm="child"} 1236992
            cowtrace_copied_bytes_total{pid="10",comm="parent"} 163840
            # HELP cowtrace_forks_total Processes forked since tracing started. Unit: forks.
            # TYPE cowtrace_forks_total counter
            cowtrace_forks_total{pid="11",comm="child"} 0
            cowtrace_forks_total{pid="10",comm="parent"} 1
            # HELP cowtrace_execs_total Successful execve calls since tracing started. Unit: execs.
            # TYPE cowtrace_execs_total counter
            cowtrace_execs_total{pid="11",comm="child"} 1
            cowtrace_execs_total{pid="10",comm="parent"} 0
            # HELP cowtrace_copy_latency_seconds Time in the write-protect fault handler of faults that copied (fentry and kprobe tiers only), in seconds.
            # TYPE cowtrace_copy_latency_seconds histogram
            cowtrace_copy_latency_seconds_bucket{pid="11",comm="child",le="1.023e-06"} 2
            cowtrace_copy_latency_seconds_bucket{pid="11",comm="child",le="2.047e-06"} 3
            cowtrace_copy_latency_seconds_bucket{pid="11",comm="child",le="+Inf"} 3
            cowtrace_copy_latency_seconds_sum{pid="11",comm="child"} 2e-06
            cowtrace_copy_latency_seconds_count{pid="11",comm="child"} 3
            # HELP cowtrace_copies_per_interval Copies a process made in each interval in which it made any (burst size). Unit: copies per interval of cowtrace_copies_per_interval_seconds.
            # TYPE cowtrace_copies_per_interval histogram
            cowtrace_copies_per_interval_bucket{pid="11",comm="child",le="7"} 1
            cowtrace_copies_per_interval_bucket{pid="11",comm="child",le="15"} 1
            cowtrace_copies_per_interval_bucket{pid="11",comm="child",le="31"} 4
            cowtrace_copies_per_interval_bucket{pid="11",comm="child",le="+Inf"} 4
            cowtrace_copies_per_interval_sum{pid="11",comm="child"} 70
            cowtrace_copies_per_interval_count{pid="11",comm="child"} 4
            # HELP cowtrace_dropped_events_total Events the kernel side could not deliver or store, by reason: ring_buffer_full (events to user space), histogram_map_full (histogram or stack updates), vma_lookup_busy (faults left out of the mapping histograms). Unit: events.
            # TYPE cowtrace_dropped_events_total counter
            cowtrace_dropped_events_total{reason="ring_buffer_full"} 2
            cowtrace_dropped_events_total{reason="histogram_map_full"} 0
            cowtrace_dropped_events_total{reason="vma_lookup_busy"} 0
            # HELP cowtrace_dropped_processes_total Processes the kernel side could not store, by reason: process_map_full (processes not counted), info_map_full (identities or fork records not stored). Unit: processes.
            # TYPE cowtrace_dropped_processes_total counter
            cowtrace_dropped_processes_total{reason="process_map_full"} 0
            cowtrace_dropped_processes_total{reason="info_map_full"} 0
            # HELP cowtrace_info Always 1 (build and runtime information): the attach tier in use, the kernel release (uname -r) and cowtrace's version.
            # TYPE cowtrace_info gauge
            cowtrace_info{tier="tracepoint",kernel="6.18.0-test",version="0.1.0"} 1
            # HELP cowtrace_traced_processes Processes being traced that have not exited. Unit: processes.
            # TYPE cowtrace_traced_processes gauge
            cowtrace_traced_processes 1
            # HELP cowtrace_aggregated_processes Processes beyond --top whose counts are summed into the series with pid="other". Unit: processes.
            # TYPE cowtrace_aggregated_processes gauge
            cowtrace_aggregated_processes 0
            # HELP cowtrace_bpf_stats_enabled 1 when kernel.bpf_stats_enabled is on and the kernel counts cowtrace_bpf_program_runs_total and cowtrace_bpf_program_run_seconds_total; 0 when off (turn on: sysctl kernel.bpf_stats_enabled=1 (costs about 20 ns per program run)). Read at every scrape. Unit: boolean.
            # TYPE cowtrace_bpf_stats_enabled gauge
            cowtrace_bpf_stats_enabled 1
            # HELP cowtrace_bpf_program_runs_total Runs of each attached cowtrace BPF program since it was loaded (the kernel's run_cnt; counted only while kernel.bpf_stats_enabled is 1). Unit: runs.
            # TYPE cowtrace_bpf_program_runs_total counter
            cowtrace_bpf_program_runs_total{program="tp_page_fault_user"} 1000
            # HELP cowtrace_bpf_program_run_seconds_total Time each attached cowtrace BPF program ran since it was loaded (the kernel's run_time_ns; counted only while kernel.bpf_stats_enabled is 1), in seconds.
            # TYPE cowtrace_bpf_program_run_seconds_total counter
            cowtrace_bpf_program_run_seconds_total{program="tp_page_fault_user"} 7.5e-05

            """)
        XCTAssertEqual(MetricsExposition.contentType, "text/plain; version=0.0.4; charset=utf-8")
    }

    func testLabelValuesAreEscaped() {
        XCTAssertEqual(MetricsExposition.escapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd")
        let snapshot = TraceSnapshot(counters: [5: counters(copies: 1)],
                                     info: [5: ProcessIdentity(ppid: 1, comm: "we\"ird\\\nname")], drops: DropCounts())
        let text = MetricsExposition().render(metrics(snapshot))
        XCTAssertTrue(text.contains("cowtrace_copied_bytes_total{pid=\"5\",comm=\"we\\\"ird\\\\\\nname\"} 4096\n"), text)
        // Every sample stays on one line: no raw newline inside a label.
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            XCTAssertNotNil(line.range(of: #"^[a-z_]+(\{.*\})? [0-9.e+-]+$"#, options: .regularExpression), String(line))
        }
    }

    func testTopNGivesSeriesToTheMostCopiesAndSumsTheRestIntoOther() throws {
        var all: [Int32: ProcessCounters] = [:]
        var info: [Int32: ProcessIdentity] = [:]
        var hists: [ProcessHistograms] = []
        for pid in Int32(100)..<Int32(110) {
            let n = UInt64(pid - 99) // pid 109 copied the most
            all[pid] = counters(copies: n * 10, reuses: n, zeroFills: 1, fileCopies: n, sharedWrites: 2, forks: 1, execs: 1)
            info[pid] = ProcessIdentity(ppid: 1, comm: "w\(pid)")
            hists.append(ProcessHistograms(pid: pid, comm: "w\(pid)", histograms: [.copiesPerInterval: histogram([Int(n): 1], sum: n)]))
        }
        info[105]?.exited = true
        let top = 3
        let text = MetricsExposition(top: top).render(metrics(TraceSnapshot(counters: all, info: info, drops: DropCounts()), hists))
        let samples = parse(text)

        for cls in MetricsExposition.classes {
            let series = samples.filter { $0.name == "cowtrace_write_protect_faults_total" && $0.labels["class"] == cls }
            XCTAssertEqual(series.count, top + 1, cls)
            XCTAssertEqual(series.prefix(top).map { $0.labels["pid"] }, ["109", "108", "107"], cls)
            let other = try XCTUnwrap(series.first { $0.labels["pid"] == "other" })
            XCTAssertNil(other.labels["comm"])
            let expected = (100...106).map { pid -> Double in
                let c = all[Int32(pid)]!
                switch cls {
                case "copy": return Double(c.copies)
                case "reuse": return Double(c.reuses)
                case "zero_fill": return Double(c.zeroFills)
                case "file_copy": return Double(c.fileCopies)
                default: return Double(c.sharedWrites)
                }
            }.reduce(0, +)
            XCTAssertEqual(other.value, expected, cls)
            // Nothing lost: the series add up to the totals.
            XCTAssertEqual(series.map(\.value).reduce(0, +), all.values.map { c -> Double in
                switch cls {
                case "copy": return Double(c.copies)
                case "reuse": return Double(c.reuses)
                case "zero_fill": return Double(c.zeroFills)
                case "file_copy": return Double(c.fileCopies)
                default: return Double(c.sharedWrites)
                }
            }.reduce(0, +), cls)
        }
        let bytes = samples.filter { $0.name == "cowtrace_copied_bytes_total" }
        XCTAssertEqual(bytes.count, top + 1)
        XCTAssertEqual(bytes.first { $0.labels["pid"] == "other" }?.value, Double((1...7).map { $0 * 11 }.reduce(0, +) * 4096))
        XCTAssertEqual(samples.filter { $0.name == "cowtrace_forks_total" }.first { $0.labels["pid"] == "other" }?.value, 7)

        let counts = samples.filter { $0.name == "cowtrace_copies_per_interval_count" }
        XCTAssertEqual(counts.count, top + 1)
        XCTAssertEqual(counts.first { $0.labels["pid"] == "other" }?.value, 7)
        XCTAssertEqual(samples.filter { $0.name == "cowtrace_copies_per_interval_sum" }.first { $0.labels["pid"] == "other" }?.value,
                       Double((1...7).reduce(0, +)))
        XCTAssertEqual(samples.first { $0.name == "cowtrace_aggregated_processes" }?.value, 7)
        XCTAssertEqual(samples.first { $0.name == "cowtrace_traced_processes" }?.value, 9)
    }

    func testHistogramBucketsAreCumulativeMonotoneAndInfEqualsCount() {
        var generator = SystemRandomNumberGenerator()
        var all: [Int32: ProcessCounters] = [:]
        var hists: [ProcessHistograms] = []
        for pid in Int32(1)...Int32(8) {
            all[pid] = counters(copies: UInt64(pid))
            var map: [HistogramKind: Log2Histogram] = [:]
            for kind in HistogramKind.allCases {
                var h = Log2Histogram()
                for _ in 0..<20 { h.record(UInt64.random(in: 0...(1 << 40), using: &generator) >> UInt64.random(in: 0...40, using: &generator)) }
                map[kind] = h
            }
            hists.append(ProcessHistograms(pid: pid, comm: "p\(pid)", histograms: map))
        }
        let text = MetricsExposition(top: 5).render(metrics(TraceSnapshot(counters: all, info: [:], drops: DropCounts()), hists, tier: .fentry))
        let samples = parse(text)
        for family in ["cowtrace_copy_latency_seconds", "cowtrace_copies_per_interval", "cowtrace_fault_offset_bytes"] {
            let buckets = samples.filter { $0.name == family + "_bucket" }
            let series = Dictionary(grouping: buckets) { s in s.labels.filter { $0.key != "le" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
            XCTAssertEqual(series.count, family == "cowtrace_fault_offset_bytes" ? 6 * MappingKind.allCases.count : 6, family)
            var leSets = Set<[String]>()
            for (key, rows) in series {
                let bounds = rows.map { $0.labels["le"]! }
                leSets.insert(bounds)
                XCTAssertEqual(bounds.last, "+Inf", key)
                let les = bounds.dropLast().map { Double($0)! }
                XCTAssertEqual(les, les.sorted(), key)
                XCTAssertEqual(Set(les).count, les.count, key)
                let values = rows.map(\.value)
                XCTAssertEqual(values, values.sorted(), "cumulative counts never decrease: \(key)")
                let count = samples.first { s in s.name == family + "_count" && s.labels == rows[0].labels.filter { $0.key != "le" } }
                XCTAssertEqual(count?.value, values.last, "+Inf == _count: \(key)")
                XCTAssertEqual(values.last, rows[0].labels["pid"] == "other" ? 3 * 20 : 20, "pids 1 to 3 are summed into other: \(key)")
            }
            XCTAssertEqual(leSets.count, 1, "every series of \(family) has the same buckets")
        }
    }

    func testFamiliesAreContiguousAndTyped() {
        let snapshot = TraceSnapshot(counters: [1: counters(copies: 3), 2: counters(copies: 1)], info: [:], drops: DropCounts())
        let hists = [ProcessHistograms(pid: 2, comm: "x", histograms: [.offsetInMapping(.stack): histogram([3: 1], sum: 9)])]
        let text = MetricsExposition(top: 1).render(metrics(snapshot, hists))
        var seen: [String] = []
        var typed: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                typed[String(parts[2])] = String(parts[3])
                XCTAssertFalse(seen.contains(String(parts[2])), "family \(parts[2]) appears twice")
                seen.append(String(parts[2]))
            } else if !line.hasPrefix("#") {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let family = seen.last!
                XCTAssertTrue(name == family || (typed[family] == "histogram" && [family + "_bucket", family + "_sum", family + "_count"].contains(name)),
                              "\(name) under \(family)")
            }
        }
        XCTAssertEqual(typed["cowtrace_fault_offset_bytes"], "histogram")
        XCTAssertTrue(text.contains("cowtrace_fault_offset_bytes_bucket{pid=\"other\",mapping=\"stack\",le=\"15\"} 1\n"), text)
    }

    /// Every HELP names its unit (or says the value is 1, or 0 or 1).
    func testEveryHelpNamesItsUnit() {
        let snapshot = TraceSnapshot(counters: [1: counters(copies: 3), 2: counters(copies: 1)], info: [:], drops: DropCounts(),
                                     programs: [BPFProgramStatistics(name: "p", id: 1, runs: 1, runNanoseconds: 1)])
        let hists = [ProcessHistograms(pid: 2, comm: "x", histograms: [
            .offsetInMapping(.stack): histogram([3: 1], sum: 9), .copyLatency: histogram([3: 1], sum: 9),
            .copiesPerInterval: histogram([3: 1], sum: 9)])]
        var m = metrics(snapshot, hists, bpfStatsEnabled: false)
        m.burstIntervalNanoseconds = 1_000_000
        let text = MetricsExposition(top: 1).render(m)
        let helps = text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }
        XCTAssertGreaterThanOrEqual(helps.count, 16, text)
        for h in helps {
            XCTAssertTrue(["Unit: ", ", in bytes.", ", in seconds.", "in seconds.", "Always 1", "Bytes per second"].contains { h.contains($0) }, String(h))
        }
    }

    // MARK: parsing

    struct Sample { var name: String; var labels: [String: String]; var value: Double }

    /// A small parser of the text format (label values unescaped).
    private func parse(_ text: String) -> [Sample] {
        var out: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var s = Substring(line)
            let name = String(s.prefix { $0 != "{" && $0 != " " })
            s = s.dropFirst(name.count)
            var labels: [String: String] = [:]
            if s.first == "{" {
                s = s.dropFirst()
                while s.first != "}" {
                    let key = String(s.prefix { $0 != "=" })
                    s = s.dropFirst(key.count + 2) // ="
                    var value = ""
                    while let c = s.first, c != "\"" {
                        s = s.dropFirst()
                        if c == "\\", let n = s.first {
                            s = s.dropFirst()
                            value.append(n == "n" ? "\n" : n)
                        } else {
                            value.append(c)
                        }
                    }
                    s = s.dropFirst() // "
                    if s.first == "," { s = s.dropFirst() }
                    labels[key] = value
                }
                s = s.dropFirst()
            }
            out.append(Sample(name: name, labels: labels, value: Double(s.trimmingCharacters(in: .whitespaces)) ?? .nan))
        }
        return out
    }
}
