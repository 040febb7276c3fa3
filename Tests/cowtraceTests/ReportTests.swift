import CowTraceFormat
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace report`: the recorded totals of a real recording against the
/// workload and the kernel's counters; the HTML page rendered by a real
/// browser (headless Chromium: DOM and pixels); bad input gets one line.
final class ReportTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-report-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    private func assertOneLineError(_ r: CommandResult, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "must fail", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(text), "stderr was: \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(lines.first?.hasPrefix("Error: ") ?? false, r.stderr, file: file, line: line)
    }

    // MARK: (a) a real recording

    /// The workload of the brief: the child writes half of 64 MiB after the
    /// fork (8192 copies), exits, then the parent writes all of it (reuses).
    func testRecordedWorkloadTotalsMatchTheWorkloadAndTheKernelCounters() throws {
        try requireBPF()
        let file = path("workload.ctr")
        let rec = try runProduct("cowtrace", ["record", "-o", file, "-c", productPath("cowtrace-workload"), "--pages", "16384",
                                              "child:write:0:8192", "child:exit", "parent:write:0:16384"])
        XCTAssertEqual(rec.status, 0, rec.stderr)
        let workload = try XCTUnwrap(workloadLine(rec.stdout), rec.stdout)
        let child = try XCTUnwrap(workload["child"] as? Int), parent = try XCTUnwrap(workload["parent"] as? Int)

        // Text: the child's row, its copies, and no flagged counters.
        let text = try runProduct("cowtrace", ["report", file])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("selection:"), text.stdout)
        XCTAssertTrue(text.stdout.contains("lost events:            none"), text.stdout)
        XCTAssertTrue(text.stdout.contains("ended:                  command exited"), text.stdout)
        let row = try XCTUnwrap(text.stdout.split(separator: "\n").first { $0.split(separator: " ").first == Substring("\(child)") }, text.stdout)
        let copiesInText = try XCTUnwrap(Int(row.split(separator: " ")[2]), String(row))
        XCTAssertEqual(copiesInText, 8192, accuracy: pageSlack(8192), String(row))
        XCTAssertFalse(text.stdout.contains("! kernel counters differ"), text.stdout)

        // JSON: parses; the child's copies are the kernel's.
        let json = try runProduct("cowtrace", ["report", file, "--format", "json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        XCTAssertTrue(json.stdout.hasPrefix("{\"schema_version\":1,\"file\":"), json.stdout)
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let c = try XCTUnwrap(processes.first { $0["pid"] as? Int == child }, json.stdout)
        let copies = try XCTUnwrap(c["copies"] as? Int)
        XCTAssertEqual(copies, 8192, accuracy: pageSlack(8192))
        let kernel = try XCTUnwrap(c["kernel"] as? [String: Any], "the child's counters were recorded")
        XCTAssertEqual(kernel["copies"] as? Int, copies, "events and the kernel's counters")
        XCTAssertEqual(kernel["wp_faults"] as? Int, c["wp_faults"] as? Int)
        XCTAssertEqual(c["kernel_differs"] as? Bool, false)
        XCTAssertEqual(c["exit_code"] as? Int, 0)
        XCTAssertEqual(c["ppid"] as? Int, parent)
        let p = try XCTUnwrap(processes.first { $0["pid"] as? Int == parent })
        XCTAssertEqual(p["forks"] as? Int, 1)
        XCTAssertEqual(p["reuses"] as? Int ?? 0, 16384, accuracy: pageSlack(16384), "the parent owns its pages again")
        XCTAssertEqual((object["lost_events"] as? [String: Any])?["total"] as? Int, 0)
        XCTAssertTrue(object["cut"] is NSNull)

        // CSV: a header and the child's row.
        let csv = try runProduct("cowtrace", ["report", file, "--format", "csv"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        XCTAssertTrue(csv.stdout.hasPrefix("pid,ppid,comm,"))
        XCTAssertTrue(csv.stdout.contains("\n\(child),\(parent),"), csv.stdout)

        // The page of the real recording, in a real browser when there is one.
        let html = path("workload.html")
        let page = try runProduct("cowtrace", ["report", file, "-o", html])
        XCTAssertEqual(page.status, 0, page.stderr)
        XCTAssertTrue(try String(contentsOfFile: html, encoding: .utf8).contains("data-pid=\"\(child)\""))
        if let chromium = findChromium() {
            let dom = try chromiumDOM(chromium, html)
            XCTAssertTrue(dom.contains("class=\"area series series-0\" data-pid=\"\(child)\""), "the child copied most")
            XCTAssertTrue(dom.contains("pid \(child) ("), dom)
        }
    }

    // MARK: (b) the page in a browser

    func testHTMLPageRendersInHeadlessChromium() throws {
        guard let chromium = findChromium() else {
            let reason = "chromium is not installed (scripts/setup installs it)"
            if ProcessInfo.processInfo.environment["COWTRACE_REQUIRE_BPF"] == "1" {
                XCTFail("COWTRACE_REQUIRE_BPF=1 but \(reason)")
            }
            throw XCTSkip(reason)
        }
        let file = path("synthetic.ctr")
        try SyntheticRecording.write(to: file)
        let html = path("report.html")
        let r = try runProduct("cowtrace", ["report", file, "-o", html])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("wrote \(html)"), r.stderr)
        XCTAssertEqual(r.stdout, "", "with -o and no --format, nothing on stdout")
        var st = stat()
        XCTAssertEqual(lstat(html, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644)

        // The DOM as the browser parsed it: the charts with their data elements.
        let dom = try chromiumDOM(chromium, html)
        func count(_ needle: String) -> Int { dom.components(separatedBy: needle).count - 1 }
        // Copies over time, faults by class over time, class breakdown, copies per interval (all, and each copier).
        XCTAssertEqual(count("<svg class=\"chart\""), 4 + 3, dom)
        XCTAssertEqual(count("<path class=\"area series series-"), 3)    // the 3 copiers, no "other"
        XCTAssertEqual(count("class=\"area series series-other\""), 0)
        for pid in SyntheticRecording.copiers {
            XCTAssertTrue(dom.contains("data-pid=\"\(pid)\""), "pid \(pid)")
            XCTAssertTrue(dom.contains(">pid \(pid) ("), "label of pid \(pid)")
        }
        XCTAssertEqual(count("<g class=\"bar-row\""), 4)
        XCTAssertEqual(count("<rect class=\"seg class-copy\""), 3)
        XCTAssertEqual(count("<rect class=\"seg class-reuse\""), 1)
        XCTAssertGreaterThanOrEqual(count("<rect class=\"col hist-bar\""), 4)
        XCTAssertEqual(count("<li class=\"fork-node\""), 5)
        XCTAssertEqual(count("<tr class=\"oom-kill\""), 1)
        // The browser saw the comm as text, not markup.
        XCTAssertFalse(dom.contains("<b>"))
        XCTAssertTrue(dom.contains("&lt;b&gt;"), dom)

        // The pixels: a real render, with the chart colours where the charts are.
        let png = path("report.png")
        let shot = try run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                      "--screenshot=\(png)", "--window-size=1200,2400", "file://\(html)"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: png), shot.stderr)
        let colours = ["series0=4e79a7", "series1=f28e2b", "series2=59a14f", "copy=d62728", "reuse=2ca02c", "hist=6a3d9a", "background=ffffff"]
        let out = try run("/usr/bin/env", ["python3", scriptPath("png-colours"), png] + colours)
        XCTAssertEqual(out.status, 0, out.stderr)
        let found = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any], out.stdout)
        XCTAssertEqual(found["width"] as? Int, 1200)
        XCTAssertEqual(found["height"] as? Int, 2400)
        let colourInfo = try XCTUnwrap(found["colours"] as? [String: [String: Any]])
        func pixels(_ name: String) -> Int { colourInfo[name]?["pixels"] as? Int ?? 0 }
        func box(_ name: String) -> [Int] { colourInfo[name]?["box"] as? [Int] ?? [] }   // x0, y0, x1, y1
        XCTAssertGreaterThan(pixels("background"), 1200 * 2400 / 2, "a white page")
        // The top process's area fills a large part of the copies-over-time chart.
        XCTAssertGreaterThan(pixels("series0"), 5000, "\(found)")
        XCTAssertGreaterThan(pixels("series1"), 500, "\(found)")
        XCTAssertGreaterThan(pixels("series2"), 200, "\(found)")
        XCTAssertGreaterThan(pixels("copy"), 3000, "\(found)")
        XCTAssertGreaterThan(pixels("reuse"), 500, "\(found)")
        XCTAssertGreaterThan(pixels("hist"), 2000, "\(found)")
        // Where they are: the areas in a chart-sized region, the histogram columns below them.
        let s0 = box("series0")
        XCTAssertEqual(s0.count, 4)
        if s0.count == 4 {
            XCTAssertGreaterThan(s0[2] - s0[0], 300, "the area spans the time axis: \(s0)")
            XCTAssertLessThan(s0[3] - s0[1], 420, "inside one chart: \(s0)")
            let h = box("hist")
            XCTAssertGreaterThan(h.count == 4 ? h[1] : 0, s0[3], "histograms are below copies over time")
        }
        // COWTRACE_REPORT_SCREENSHOT=/path/shot.png keeps the screenshot (and the page as /path/shot.png.html) to look at.
        if let keep = ProcessInfo.processInfo.environment["COWTRACE_REPORT_SCREENSHOT"] {
            for (from, to) in [(png, keep), (html, keep + ".html")] {
                try? FileManager.default.removeItem(atPath: to)
                try FileManager.default.copyItem(atPath: from, toPath: to)
            }
        }
    }

    // MARK: (c) bad input

    func testMissingFile() throws {
        assertOneLineError(try runProduct("cowtrace", ["report", path("nope.ctr")]), contains: "nope.ctr: no such file")
    }

    func testNotARecording() throws {
        let file = path("text.ctr")
        try "hello\n".write(toFile: file, atomically: true, encoding: .utf8)
        assertOneLineError(try runProduct("cowtrace", ["report", file]), contains: "not a cowtrace recording")
    }

    func testTruncatedRecordingNamesTheOffsetAndSalvageReadsUpToIt() throws {
        let file = path("cut.ctr")
        let blocks = try SyntheticRecording.write(to: file)
        // Cut the file 40 bytes into the last records block (inside its payload).
        let cutBlock = blocks[blocks.count - 1]
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        try bytes.prefix(cutBlock + 40).write(to: URL(fileURLWithPath: file))

        let r = try runProduct("cowtrace", ["report", file])
        assertOneLineError(r, contains: "truncated block at offset \(cutBlock)")
        XCTAssertTrue(r.stderr.contains("--salvage"), r.stderr)

        let s = try runProduct("cowtrace", ["report", file, "--salvage", "--format", "json"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(s.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((object["cut"] as? [String: Any])?["offset"] as? Int, cutBlock)
        // The last block held the late process's copies and the end: what is before it is all there.
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        for (pid, copies) in SyntheticRecording.copiesBeforeLastBlock {
            XCTAssertEqual(processes.first { $0["pid"] as? Int == Int(pid) }?["copies"] as? Int, copies, "pid \(pid)")
        }
        XCTAssertTrue(object["end"] is NSNull)
        let text = try runProduct("cowtrace", ["report", file, "--salvage"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("recording cut at offset \(cutBlock): "), text.stdout)
        XCTAssertTrue(text.stdout.contains("truncated block at offset \(cutBlock)"), text.stdout)
    }

    func testRecordingWithoutEndRecordIsReportedAsCut() throws {
        let file = path("killed.ctr")
        let blocks = try SyntheticRecording.write(to: file)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let last = blocks[blocks.count - 1]
        try bytes.prefix(last).write(to: URL(fileURLWithPath: file))   // whole blocks, no end record
        let r = try runProduct("cowtrace", ["report", file])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("recording cut at offset \(last): no end record (the recorder was killed)"), r.stdout)
    }

    func testUnwritableOutputPaths() throws {
        let file = path("ok.ctr")
        try SyntheticRecording.write(to: file)
        assertOneLineError(try runProduct("cowtrace", ["report", file, "-o", path("no/such/dir/report.html")]),
                           contains: "its directory does not exist")
        let target = path("target.html")
        try "keep".write(toFile: target, atomically: true, encoding: .utf8)
        let link = path("link.html")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        assertOneLineError(try runProduct("cowtrace", ["report", file, "-o", link]), contains: "symbolic link")
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep", "the link's target is untouched")
        assertOneLineError(try runProduct("cowtrace", ["report", file, "-o", directory]), contains: "is a directory")
    }

    /// An existing -o file is kept (exit 64, one line naming --force); with --force it is rewritten.
    func testAnExistingOutputNeedsForce() throws {
        let file = path("ok.ctr")
        try SyntheticRecording.write(to: file)
        let html = path("old.html")
        try "keep".write(toFile: html, atomically: true, encoding: .utf8)
        let refused = try runProduct("cowtrace", ["report", file, "-o", html])
        XCTAssertEqual(refused.status, 64, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") },
                       ["Error: -o \(html): the file exists; pass --force to overwrite it, or choose another path"])
        XCTAssertEqual(try String(contentsOfFile: html, encoding: .utf8), "keep")
        let forced = try runProduct("cowtrace", ["report", file, "-o", html, "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertTrue(try String(contentsOfFile: html, encoding: .utf8).hasPrefix("<!DOCTYPE html>"))
    }

    // MARK: helpers

    private func findChromium() -> String? {
        for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return nil
    }

    private func chromiumDOM(_ chromium: String, _ html: String) throws -> String {
        let r = try run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "file://\(html)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout
    }

    /// scripts/NAME.py of the source tree (found from this file's path).
    private func scriptPath(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/\(name).py").path
    }

    struct RunResult { let status: Int32; let stdout: String; let stderr: String }

    private func run(_ executable: String, _ arguments: [String]) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // Chromium wants a writable home for its profile.
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = directory
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let done = DispatchSemaphore(value: 0)
        let errHandle = err.fileHandleForReading
        DispatchQueue.global().async { errBox.data = errHandle.readDataToEndOfFile(); done.signal() }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        process.waitUntilExit()
        return RunResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: errBox.data, as: UTF8.self))
    }
}

/// A small recording written with TraceFileWriter, in several blocks: pid
/// 1000 forks 1001, 1002 and 1003, which copy 3000, 1500 and 600 pages in
/// bursts; 1001 is OOM-killed; the last block holds 1003's copies and the end.
enum SyntheticRecording {
    static let ms: UInt64 = 1_000_000
    static let start: UInt64 = 10_000_000_000
    static let copiers: [Int32] = [1001, 1002, 1003]
    static let copiesBeforeLastBlock: [(Int32, Int)] = [(1001, 3000), (1002, 1500)]

    /// Writes the file; returns the offsets where a block starts after each
    /// flush (the last one: the last block, 1003's copies and the end).
    @discardableResult
    static func write(to path: String) throws -> [Int] {
        let header = TraceHeader(kernelRelease: "6.18.0-synthetic", hostname: "test", attachTiers: ["faults": "tracepoint"],
                                 pageSize: 4096, realtimeOffsetNanoseconds: 1_700_000_000_000_000_000, startTime: start,
                                 ramBytes: 8 << 30, swapBytes: 0, overcommitMemory: 0, overcommitRatio: 50,
                                 overcommitKBytes: 0, transparentHugePages: "madvise", selection: "synthetic",
                                 toolVersion: "test")
        let writer = try TraceFileWriter(path: path, header: header, overwrite: true)
        var offsets: [Int] = []   // where the blocks after each flush start
        func copies(_ pid: Int32, _ n: Int, from t0: UInt64, perMs: Int) {
            for i in 0..<n {
                let t = t0 + UInt64(i) * ms / UInt64(perMs)
                let address = 0x7f00_0000_0000 + UInt64(i) * 4096
                writer.append(.fault(FaultRecord(time: t, pid: pid, tid: pid, address: address, ip: 1, kind: .writeProtect, faultClass: .unresolved)))
                writer.append(.resolve(ResolveRecord(time: t + 1, pid: pid, tid: pid, address: address, faultClass: .copy)))
            }
        }
        writer.append(.process(ProcessRecord(time: start + ms, pid: 1000, ppid: 1, uid: 0, comm: "server", startBrk: 0, brk: 0, startStack: 0)))
        for i in 0..<2000 {
            let t = start + 2 * ms + UInt64(i) * 100_000
            writer.append(.fault(FaultRecord(time: t, pid: 1000, tid: 1000, address: 0x1000, ip: 1, kind: .writeProtect, faultClass: .unresolved)))
        }
        writer.append(.fork(ForkEventRecord(time: start + 300 * ms, parent: 1000, parentTid: 1000, child: 1001, comm: "server")))
        writer.append(.exec(ExecEventRecord(time: start + 301 * ms, pid: 1001, tid: 1001, comm: "<b>worker</b>")))
        copies(1001, 3000, from: start + 310 * ms, perMs: 10)
        try writer.flush()
        offsets.append(writer.bytesWritten)
        writer.append(.fork(ForkEventRecord(time: start + 700 * ms, parent: 1000, parentTid: 1000, child: 1002, comm: "server")))
        copies(1002, 1500, from: start + 710 * ms, perMs: 5)
        writer.append(.oomKill(OOMKillRecord(time: start + 1100 * ms, victim: 1001, comm: "<b>worker</b>", uid: 0, oomScoreAdj: 0,
                                             totalVMKB: 500_000, anonRSSKB: 400_000, fileRSSKB: 2000, shmemRSSKB: 0,
                                             pgtablesKB: 900, constraint: "global")))
        writer.append(.exit(ExitEventRecord(time: start + 1100 * ms, pid: 1001, tid: 1001, exitCode: 9)))
        writer.append(.fork(ForkEventRecord(time: start + 1200 * ms, parent: 1000, parentTid: 1000, child: 1004, comm: "server")))
        writer.append(.exit(ExitEventRecord(time: start + 1210 * ms, pid: 1004, tid: 1004, exitCode: 0)))
        try writer.flush()
        offsets.append(writer.bytesWritten)
        writer.append(.fork(ForkEventRecord(time: start + 1300 * ms, parent: 1000, parentTid: 1000, child: 1003, comm: "server")))
        copies(1003, 600, from: start + 1310 * ms, perMs: 2)
        writer.append(.end(EndRecord(time: start + 2000 * ms, reason: "command exited")))
        try writer.close()
        return offsets
    }
}
