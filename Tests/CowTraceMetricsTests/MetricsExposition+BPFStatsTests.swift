import CowTraceKit
import CowTraceMetrics
import CowTraceTestSupport
import Foundation
import XCTest

/// cowtrace's own cost in the exposition: every attached program's run count
/// and run time, compared live with bpftool's reading of the same kernel
/// counters, and the fault program's runs with the pages a workload wrote
/// (pagemap truth); cowtrace_bpf_stats_enabled and its HELP when it is off.
final class MetricsExpositionBPFStatsTests: XCTestCase {
    /// kernel.bpf_stats_enabled before the test changed it, restored by tearDown.
    private var savedStats: String?

    override func tearDown() {
        if let old = savedStats { try? old.write(toFile: KernelFacts.bpfStatsPath, atomically: false, encoding: .utf8) }
        savedStats = nil
        super.tearDown()
    }

    private func setBPFStats(_ on: Bool) throws {
        if savedStats == nil {
            savedStats = try String(contentsOfFile: KernelFacts.bpfStatsPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try (on ? "1" : "0").write(toFile: KernelFacts.bpfStatsPath, atomically: false, encoding: .utf8)
        XCTAssertEqual(KernelFacts.bpfStatsEnabled(), on)
    }

    /// The serve-like source: the tracer's snapshots and histograms as they are.
    private final class TracerSource: MetricsSource {
        let tracer: CowTracer
        init(_ tracer: CowTracer) { self.tracer = tracer }
        var tier: AttachTier { tracer.tier }
        var pageSize: UInt64 { tracer.pageSize }
        func snapshot() throws -> TraceSnapshot { try tracer.snapshot() }
        func histograms() throws -> [ProcessHistograms] { try tracer.histograms() }
    }

    private static func which(_ name: String) -> String? {
        ["/usr/sbin/", "/usr/bin/", "/usr/local/sbin/", "/usr/local/bin/"].map { $0 + name }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private func require(_ tool: String, package: String) throws -> String {
        if let path = Self.which(tool) { return path }
        let reason = "\(tool) is not installed (Debian package \(package): run scripts/setup)"
        if ProcessInfo.processInfo.environment["COWTRACE_REQUIRE_BPF"] == "1" { XCTFail(reason) }
        throw XCTSkip(reason)
    }

    private static func run(_ tool: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, stdout: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        let out = Pipe(), inPipe = Pipe()
        p.standardOutput = out
        p.standardError = out
        if input != nil { p.standardInput = inPipe }
        try p.run()
        if let input {
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try inPipe.fileHandleForWriting.close()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// run_cnt and run_time_ns of each program id, as bpftool reads them
    /// (bpftool leaves both out while run_time_ns is 0).
    private func bpftool(_ path: String, _ ids: [UInt32]) throws -> [UInt32: (runs: UInt64, ns: UInt64)] {
        var result: [UInt32: (UInt64, UInt64)] = [:]
        for id in ids {
            let r = try Self.run(path, ["prog", "show", "id", "\(id)", "--json"])
            XCTAssertEqual(r.status, 0, r.stdout)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            result[id] = ((object["run_cnt"] as? NSNumber)?.uint64Value ?? 0, (object["run_time_ns"] as? NSNumber)?.uint64Value ?? 0)
        }
        return result
    }

    /// The value of each `name{program="..."}` sample.
    private func perProgram(_ text: String, _ name: String) -> [String: Double] {
        var values: [String: Double] = [:]
        let prefix = name + "{program=\""
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
            let rest = line.dropFirst(prefix.count)
            guard let quote = rest.firstIndex(of: "\""), let space = rest.lastIndex(of: " ") else { continue }
            values[String(rest[..<quote])] = Double(rest[rest.index(after: space)...])
        }
        return values
    }

    private func promtoolCheck(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let promtool = try require("promtool", package: "prometheus")
        let check = try Self.run(promtool, ["check", "metrics"], input: text)
        XCTAssertEqual(check.status, 0, "promtool check metrics: \(check.stdout)", file: file, line: line)
    }

    /// The programs on the write-protect fault path: every write-protect fault runs one.
    private static let faultPrograms = ["fentry_do_wp_page", "kprobe_do_wp_page", "tp_page_fault_user"]

    func testEveryProgramsRunsAreTheKernelsAndTheFaultProgramRanForEveryPageWritten() throws {
        try requireBPF()
        let bpftoolPath = try require("bpftool", package: "bpftool")
        try setBPFStats(true)
        var options = TracerOptions()
        options.selection.all = true // as serve without -p/-c
        options.histograms = true
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let collector = MetricsCollector(source: TracerSource(tracer), grouping: .cgroup)
        let programs = tracer.programStatistics()
        XCTAssertFalse(programs.isEmpty)
        let ids = Dictionary(uniqueKeysWithValues: programs.map { ($0.name, $0.id) })
        let fault = try XCTUnwrap(programs.first { Self.faultPrograms.contains($0.name) }, "\(programs.map(\.name))").name

        let first = try collector.render()
        let pages = 4096
        let workload = try runProduct("cowtrace-workload", ["--pages", "\(pages)", "child:write:0:\(pages)", "child:exit"])
        XCTAssertEqual(workload.status, 0, workload.stderr)
        let frames = (workloadLine(workload.stdout)?["frames"] as? [String: Any])?["child"] as? [String: Any]
        let written = try XCTUnwrap(frames?["written"] as? Int, "no pagemap truth: \(workload.stdout)")
        XCTAssertGreaterThanOrEqual(written, pages)

        // bpftool right before and right after the scrape: each exported value lies between.
        let before = try bpftool(bpftoolPath, Array(ids.values))
        let text = try collector.render()
        let after = try bpftool(bpftoolPath, Array(ids.values))
        let runs = perProgram(text, "cowtrace_bpf_program_runs_total")
        let seconds = perProgram(text, "cowtrace_bpf_program_run_seconds_total")
        XCTAssertEqual(Set(runs.keys), Set(ids.keys), text)
        XCTAssertEqual(Set(seconds.keys), Set(ids.keys), text)
        for (name, id) in ids.sorted(by: { $0.key < $1.key }) {
            let b = before[id]!, a = after[id]!
            let got = UInt64(try XCTUnwrap(runs[name]))
            print("bpfstats: \(name) (id \(id)): exported \(got) runs, bpftool \(b.runs) before and \(a.runs) after the scrape (slack \(a.runs - b.runs)); \(seconds[name] ?? -1) s")
            XCTAssertTrue(b.runs <= got && got <= a.runs, "\(name): \(got) runs exported, bpftool read \(b.runs) before the scrape and \(a.runs) after")
            // Seconds print with 17 significant digits: within 1 ns of bpftool's nanoseconds.
            let ns = try XCTUnwrap(seconds[name]) * 1e9
            XCTAssertTrue(Double(b.ns) - 1 <= ns && ns <= Double(a.ns) + 1, "\(name): \(ns) ns exported, bpftool \(b.ns)...\(a.ns)")
        }
        // The fault program ran for every page the child wrote (at least: it runs for the whole host).
        let ran = runs[fault]! - (perProgram(first, "cowtrace_bpf_program_runs_total")[fault] ?? 0)
        print("bpfstats: \(fault) ran \(Int(ran)) times during a workload that wrote \(written) pages (pagemap), tier \(tracer.tier)")
        XCTAssertGreaterThanOrEqual(ran, Double(written), "\(fault) runs during the workload")
        XCTAssertGreaterThan(seconds[fault]!, 0)
        XCTAssertTrue(text.contains("\ncowtrace_bpf_stats_enabled 1\n"), text)
        XCTAssertFalse(text.contains("kernel.bpf_stats_enabled is 0"), "no warning while on")
        try promtoolCheck(text)

        // Off: the gauge says 0 at the next scrape, the HELP says how to turn it
        // on, and the counters stay (they never decrease).
        try setBPFStats(false)
        let off = try collector.render()
        XCTAssertTrue(off.contains("\ncowtrace_bpf_stats_enabled 0\n"), off)
        let help = off.split(separator: "\n").filter { $0.hasPrefix("# HELP cowtrace_bpf_program_") }
        XCTAssertEqual(help.count, 2, off)
        for h in help { XCTAssertTrue(h.contains("turn on with sysctl kernel.bpf_stats_enabled=1"), String(h)) }
        for (name, v) in perProgram(off, "cowtrace_bpf_program_runs_total") { XCTAssertGreaterThanOrEqual(v, runs[name]!, name) }
        try promtoolCheck(off)
        let om = try collector.render(format: .openMetrics)
        XCTAssertTrue(om.contains("# UNIT cowtrace_bpf_program_run_seconds seconds\n"), om)
        XCTAssertTrue(om.contains("cowtrace_bpf_program_runs_created{program=\"\(fault)\"} "), om)
    }

    /// Fixed figures, off: the exact samples and the HELP that says how to turn it on.
    func testStatsOffIsAZeroGaugeAndTheHelpSaysHowToTurnThemOn() {
        let programs = [BPFProgramStatistics(name: "fentry_do_wp_page", id: 7, runs: 12, runNanoseconds: 1_500)]
        let snapshot = TraceSnapshot(counters: [:], info: [:], drops: DropCounts(), programs: programs)
        for enabled in [false, true] {
            let m = MetricsSnapshot(snapshot: snapshot, histograms: [], tier: .fentry, pageSize: 4096,
                                    kernelRelease: "6.18.0-test", version: "0.1.0", bpfStatsEnabled: enabled)
            let lines = MetricsExposition().render(m).split(separator: "\n").map(String.init)
            XCTAssertTrue(lines.contains("cowtrace_bpf_stats_enabled \(enabled ? 1 : 0)"), "\(lines)")
            XCTAssertTrue(lines.contains("cowtrace_bpf_program_runs_total{program=\"fentry_do_wp_page\"} 12"), "\(lines)")
            XCTAssertTrue(lines.contains("cowtrace_bpf_program_run_seconds_total{program=\"fentry_do_wp_page\"} 1.5e-06"), "\(lines)")
            let help = lines.filter { $0.hasPrefix("# HELP cowtrace_bpf_program_") }
            XCTAssertEqual(help.count, 2)
            for h in help {
                XCTAssertEqual(h.contains("kernel.bpf_stats_enabled is 0 now") && h.contains("turn on with sysctl kernel.bpf_stats_enabled=1"),
                               !enabled, h)
            }
            let gaugeHelp = lines.first { $0.hasPrefix("# HELP cowtrace_bpf_stats_enabled ") } ?? ""
            XCTAssertTrue(gaugeHelp.contains("sysctl kernel.bpf_stats_enabled=1"), gaugeHelp)
        }
    }
}
