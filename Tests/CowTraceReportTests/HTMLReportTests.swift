import CowTraceFormat
import CowTraceReport
import Foundation
import XCTest

/// The HTML report (and the text/JSON/CSV report) of hand-built recordings:
/// every string from the file escaped, the chart elements there for the data,
/// the same bytes for the same recording.
final class HTMLReportTests: XCTestCase {
    static let ms: UInt64 = 1_000_000
    static let start: UInt64 = 5_000_000_000
    static let nastyComm = "<b>\"x\"&'y'</b>"

    static func header() -> TraceHeader {
        TraceHeader(kernelRelease: "6.18.0-test", hostname: "host<&>", attachTiers: ["faults": "tracepoint", "oom": "fentry"],
                    pageSize: 4096, realtimeOffsetNanoseconds: 1_700_000_000_000_000_000, startTime: start,
                    ramBytes: 8 << 30, swapBytes: 0, overcommitMemory: 0, overcommitRatio: 50, overcommitKBytes: 0,
                    transparentHugePages: "madvise", selection: "-c ./app --x \"<y>\"", toolVersion: "test")
    }

    /// pid 100 forks 200 (which execs into `nastyComm` and copies 40 pages)
    /// and 300…307 (which copy 10, 11, … pages); 200 is OOM-killed; 5
    /// events are lost; the kernel's counters of 200 say 41 copies.
    static func records() -> [TraceRecord] {
        var r: [TraceRecord] = []
        var t = start + 1 * ms
        r.append(.process(ProcessRecord(time: t, pid: 100, ppid: 1, uid: 0, comm: "server", startBrk: 0, brk: 0, startStack: 0)))
        r.append(.mapping(MappingRecord(pid: 100, start: 0x1000, end: 0x9000, permissions: "rw-p", offset: 0, inode: 0, path: "[heap]")))
        func copies(_ pid: Int32, _ n: Int, at time: UInt64) {
            for i in 0..<n {
                let ft = time + UInt64(i) * 100_000
                r.append(.fault(FaultRecord(time: ft, pid: pid, tid: pid, address: 0x10000 + UInt64(i) * 4096, ip: 1,
                                            kind: .writeProtect, faultClass: .unresolved)))
                r.append(.resolve(ResolveRecord(time: ft + 1, pid: pid, tid: pid, address: 0x10000 + UInt64(i) * 4096, faultClass: .copy)))
            }
        }
        t = start + 100 * ms
        r.append(.fork(ForkEventRecord(time: t, parent: 100, parentTid: 100, child: 200, comm: "server")))
        r.append(.exec(ExecEventRecord(time: t + 1 * ms, pid: 200, tid: 200, comm: nastyComm)))
        copies(200, 40, at: t + 10 * ms)
        // pid 100: 20 reuses, 3 zero fills.
        for i in 0..<23 {
            let ft = start + 150 * ms + UInt64(i) * ms
            r.append(.fault(FaultRecord(time: ft, pid: 100, tid: 101, address: 0x1000, ip: 1, kind: .writeProtect, faultClass: .unresolved)))
            if i < 3 { r.append(.resolve(ResolveRecord(time: ft + 1, pid: 100, tid: 101, address: 0x1000, faultClass: .zeroFill))) }
        }
        for k in 0..<8 {
            let pid = Int32(300 + k)
            let ft = start + UInt64(200 + 50 * k) * ms
            r.append(.fork(ForkEventRecord(time: ft, parent: 100, parentTid: 100, child: pid, comm: "server")))
            copies(pid, 10 + k, at: ft + 5 * ms)
            r.append(.exit(ExitEventRecord(time: ft + 40 * ms, pid: pid, tid: pid, exitCode: 0)))
        }
        r.append(.gap(GapRecord(time: start + 600 * ms, reason: .ringBufferFull, lost: 5)))
        r.append(.oomKill(OOMKillRecord(time: start + 700 * ms, victim: 200, comm: nastyComm, uid: 1000, oomScoreAdj: 300,
                                        totalVMKB: 123_456, anonRSSKB: 65_536, fileRSSKB: 1024, shmemRSSKB: 0,
                                        pgtablesKB: 256, constraint: "memcg /sys/fs/cgroup/<job>")))
        r.append(.exit(ExitEventRecord(time: start + 701 * ms, pid: 200, tid: 200, exitCode: 9)))
        r.append(.counters(CountersRecord(time: start + 800 * ms, pid: 100, comm: "server", wpFaults: 23, copies: 0, zeroFills: 3,
                                          fileCopies: 0, sharedWrites: 0, thpWPFaults: 0, forks: 9, execs: 0)))
        r.append(.counters(CountersRecord(time: start + 800 * ms, pid: 200, comm: nastyComm, wpFaults: 41, copies: 41, zeroFills: 0,
                                          fileCopies: 0, sharedWrites: 0, thpWPFaults: 0, forks: 0, execs: 1)))
        r.append(.end(EndRecord(time: start + 1000 * ms, reason: "command exited")))
        return r
    }

    static func input(_ records: [TraceRecord], cut: TraceCut? = nil) -> RecordingReportInput {
        let totals = RecordedTotals(records: records, header: header(), bins: 120)
        return RecordingReportInput(path: "/tmp/run<1>.ctr", header: header(), totals: totals, cut: cut, blocks: 3, bytes: 4096)
    }

    static func html(_ records: [TraceRecord] = records(), cut: TraceCut? = nil) -> String {
        HTMLReport.render(input(records, cut: cut), records: records)
    }

    private func occurrences(_ needle: String, in text: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }

    /// The markup of one chart (its <svg> element).
    private func svg(_ id: String, in html: String) throws -> String {
        let open = try XCTUnwrap(html.range(of: "<svg class=\"chart\" id=\"\(id)\""), "no chart \(id)")
        let close = try XCTUnwrap(html.range(of: "</svg>", range: open.upperBound..<html.endIndex))
        return String(html[open.lowerBound..<close.upperBound])
    }

    func testEscapesEveryCharacterThatMatters() {
        XCTAssertEqual(HTMLEscape.text("<a href='x'>&\"é\u{1}</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;é\u{FFFD}&lt;/a&gt;")
        XCTAssertEqual(HTMLEscape.text("plain text\n"), "plain text\n")
    }

    func testStringsFromTheFileAreEscapedEverywhere() throws {
        let html = Self.html()
        XCTAssertFalse(html.contains(Self.nastyComm))
        XCTAssertFalse(html.contains("<b>"))
        XCTAssertFalse(html.contains("<job>"))
        XCTAssertFalse(html.contains("host<&>"))
        XCTAssertFalse(html.contains("\"<y>\""))
        XCTAssertFalse(html.contains("run<1>"))
        let escaped = "&lt;b&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/b&gt;"
        // Process table, chart labels and tooltips, fork tree, OOM table.
        XCTAssertGreaterThanOrEqual(occurrences(escaped, in: html), 5)
        XCTAssertTrue(html.contains("memcg /sys/fs/cgroup/&lt;job&gt;"))
        XCTAssertTrue(html.contains("host&lt;&amp;&gt;"))
    }

    func testSelfContained() {
        let html = Self.html()
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        for forbidden in ["<script", "src=", "href=", "@import", "url(", "<link", "https://"] {
            XCTAssertFalse(html.contains(forbidden), forbidden)
        }
        // The only URL is the SVG namespace, which is never fetched.
        XCTAssertEqual(occurrences("http://", in: html), occurrences("xmlns=\"http://www.w3.org/2000/svg\"", in: html))
    }

    func testCopiesOverTimeHasTheTopProcessesThenOther() throws {
        let chart = try svg("chart-copies-over-time", in: Self.html())
        // 9 processes copied: the 6 that copied most, then "other" for 3.
        XCTAssertEqual(occurrences("<path class=\"area series series-", in: chart), 7)
        XCTAssertEqual(occurrences("class=\"area series series-other\"", in: chart), 1)
        XCTAssertTrue(chart.contains("class=\"area series series-0\" data-pid=\"200\""), chart)
        XCTAssertTrue(chart.contains("class=\"area series series-1\" data-pid=\"307\""))
        XCTAssertTrue(chart.contains("other (3 processes)"))
        XCTAssertEqual(occurrences("class=\"swatch", in: chart), 7)
        XCTAssertTrue(chart.contains("pid 200 (&lt;b&gt;"))
        // The tooltips carry each series' total.
        XCTAssertTrue(chart.contains(": 40</title></path>"), chart)
        XCTAssertTrue(chart.contains("other (3 processes): 33</title>"), chart)   // 10 + 11 + 12
    }

    func testClassBreakdownHasOneBarPerProcessWithItsClasses() throws {
        let html = Self.html()
        let chart = try svg("chart-class-breakdown", in: html)
        XCTAssertEqual(occurrences("<g class=\"bar-row\"", in: chart), 10)     // 100, 200, 300…307
        XCTAssertEqual(occurrences("<rect class=\"seg class-copy\"", in: chart), 9)
        XCTAssertEqual(occurrences("<rect class=\"seg class-reuse\"", in: chart), 1)
        XCTAssertEqual(occurrences("<rect class=\"seg class-zero-fill\"", in: chart), 1)
        XCTAssertTrue(chart.contains("pid 100 (server) reuse: 20</title>"), chart)
        XCTAssertTrue(chart.contains("pid 100 (server) zero fill: 3</title>"))
        let classes = try svg("chart-classes-over-time", in: html)
        XCTAssertEqual(occurrences("<path class=\"area series class-", in: classes), 3)   // copy, zero fill, reuse
    }

    func testHistogramsAndForkTreeAndOOMKills() throws {
        let html = Self.html()
        let all = try svg("chart-copies-per-interval", in: html)
        // Each process copied in one 100 ms interval: 10…17 copies (buckets 8–15 and 16–31) and 40 (32–63).
        XCTAssertTrue(all.contains("<title>8–15: 6</title>"), all)
        XCTAssertTrue(all.contains("<title>16–31: 2</title>"), all)
        XCTAssertTrue(all.contains("<title>32–63: 1</title>"), all)
        XCTAssertEqual(occurrences("<rect class=\"col hist-bar\"", in: all), 3)
        XCTAssertNoThrow(try svg("chart-copies-per-interval-200", in: html))

        XCTAssertEqual(occurrences("<li class=\"fork-node\"", in: html), 10)
        XCTAssertTrue(html.contains("<li class=\"fork-node\" data-pid=\"100\"><span class=\"pid\">pid 100</span>"))
        XCTAssertTrue(html.contains("40 copies (0.2 MiB)"))
        XCTAssertTrue(html.contains("killed by SIGKILL at +0.701 s"))

        XCTAssertEqual(occurrences("<tr class=\"oom-kill\" data-pid=\"200\">", in: html), 1)
        XCTAssertTrue(html.contains("64.0 MiB"))   // anon rss
        // Lost events and the kernel's differing counters are flagged.
        XCTAssertTrue(html.contains("5 events lost"))
        XCTAssertTrue(html.contains("<td class=\"kernel differs\">⚠ wp_faults 41 (events 40), copies 41 (events 40)</td>"), html)
    }

    func testCutRecordingSaysSo() {
        let html = Self.html(cut: .noEndRecord(offset: 12345))
        XCTAssertTrue(html.contains("<p class=\"warning cut\">recording cut at offset 12345: no end record (the recorder was killed)</p>"))
    }

    func testDeterministicAndIndependentOfRecordOrder() {
        let a = Self.html()
        XCTAssertEqual(a, Self.html())
        // Blocks are not in time order across the file: reversing the timed records changes nothing.
        let records = Self.records()
        let reversed = Array(records.reversed().filter { if case .mapping = $0 { return false }; return true })
        var shuffled = reversed
        shuffled.insert(records[1], at: reversed.firstIndex(of: records[0])! + 1)   // the mapping stays after its process record
        XCTAssertEqual(HTMLReport.render(Self.input(shuffled), records: shuffled), a)
    }

    func testEmptyRecordingStillRenders() {
        let records: [TraceRecord] = [.end(EndRecord(time: Self.start + 5, reason: "duration"))]
        let html = Self.html(records)
        XCTAssertTrue(html.contains("No copies were recorded."))
        XCTAssertTrue(html.contains("No forks were recorded."))
        XCTAssertTrue(html.contains("No OOM kills were recorded."))
        XCTAssertTrue(html.hasSuffix("</html>\n"))
    }

    func testTextJSONAndCSVReports() throws {
        let input = Self.input(Self.records(), cut: .noEndRecord(offset: 999))
        let text = RecordingReport.text(input)
        XCTAssertTrue(text.contains("recording cut at offset 999: no end record (the recorder was killed)"), text)
        XCTAssertTrue(text.contains("lost events:            5 (ring buffer full: 5)"), text)
        XCTAssertTrue(text.contains("! kernel counters differ: wp_faults 41 (events 40), copies 41 (events 40)"), text)
        XCTAssertTrue(text.contains("kernel:                 6.18.0-test on host<&>"))
        let row = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("     200 ") })
        XCTAssertEqual(row.split(separator: " ").dropFirst(2).first, "40")      // copies
        XCTAssertTrue(row.hasSuffix("  !"))

        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(RecordingReport.json(input).utf8)) as? [String: Any])
        let processes = try XCTUnwrap(json["processes"] as? [[String: Any]])
        let p200 = try XCTUnwrap(processes.first { $0["pid"] as? Int == 200 })
        XCTAssertEqual(p200["comm"] as? String, Self.nastyComm)
        XCTAssertEqual(p200["copies"] as? Int, 40)
        XCTAssertEqual(p200["exit_code"] as? Int, 9)
        XCTAssertEqual(p200["kernel_differs"] as? Bool, true)
        XCTAssertEqual((p200["kernel"] as? [String: Any])?["copies"] as? Int, 41)
        XCTAssertEqual((json["lost_events"] as? [String: Any])?["total"] as? Int, 5)
        XCTAssertEqual((json["cut"] as? [String: Any])?["offset"] as? Int, 999)
        XCTAssertEqual((json["oom_kills"] as? [[String: Any]])?.first?["pid"] as? Int, 200)
        XCTAssertEqual((json["forks"] as? [[String: Any]])?.count, 9)

        let csv = RecordingReport.csv(input).split(separator: "\n")
        XCTAssertEqual(String(csv[0]), RecordingReport.csvHeader)
        XCTAssertEqual(csv.count, 11)
        XCTAssertTrue(csv.contains { $0.hasPrefix("200,100,\"<b>\"\"x\"\"&'y'</b>\",40,40,0,") }, csv.joined(separator: "\n"))
    }

    func testCountAxesHaveWholeSteps() {
        XCTAssertEqual(SVGChart.countCeiling(0), 4)
        XCTAssertEqual(SVGChart.countCeiling(1), 4)
        XCTAssertEqual(SVGChart.countCeiling(5), 8)
        XCTAssertEqual(SVGChart.countCeiling(270), 300)
        XCTAssertEqual(SVGChart.countCeiling(8194), 10000)
    }
}
