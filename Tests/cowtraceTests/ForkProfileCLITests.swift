import CowTraceSelfTest
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `cowtrace fork-profile -p PID` on the snapshot pattern: the workload waits
/// at its handshake, fork-profile attaches, then the child writes 4096 pages
/// and exits without exec while the parent writes 2048 others at the same
/// time. Truth: the workload's own page frames (/proc/self/pagemap).
final class ForkProfileCLITests: XCTestCase {
    static let steps = ["--pages", "8192", "child:write:0:4096+parent:write:4096:6144", "child:exit"]

    private struct Run {
        let profile: CommandResult
        /// The traced program's last line.
        let lastLine: String
        var report: Workload.Report { get throws { try JSONDecoder().decode(Workload.Report.self, from: Data(lastLine.utf8)) } }
    }

    /// Starts the workload, profiles its fork with `arguments`, lets it go.
    private func profileWorkload(_ arguments: [String]) throws -> Run {
        try profile(command: [productPath("cowtrace-workload"), "--handshake"] + Self.steps, arguments)
    }

    /// Starts `command`, which prints "ready PID" and forks once it reads a
    /// byte on stdin; profiles that fork with fork-profile `arguments`.
    private func profile(command: [String], _ arguments: [String]) throws -> Run {
        let workload = Process()
        workload.executableURL = URL(fileURLWithPath: command[0])
        workload.arguments = Array(command.dropFirst())
        let workloadOut = Pipe(), workloadIn = Pipe()
        workload.standardOutput = workloadOut
        workload.standardInput = workloadIn
        try workload.run()
        addTeardownBlock { if workload.isRunning { workload.terminate() } }
        var ready = Data()
        while !ready.contains(UInt8(ascii: "\n")) {
            let byte = workloadOut.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty { break }
            ready.append(byte)
        }
        let pid = try XCTUnwrap(String(decoding: ready, as: UTF8.self).split(separator: " ").last.flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) },
                                "no ready line: \(String(decoding: ready, as: UTF8.self))")

        let profiler = Process()
        profiler.executableURL = URL(fileURLWithPath: productPath("cowtrace"))
        profiler.arguments = ["fork-profile", "-p", "\(pid)", "--timeout", "60"] + arguments
        let out = Pipe(), err = Pipe()
        profiler.standardOutput = out
        profiler.standardError = err
        try profiler.run()
        addTeardownBlock { if profiler.isRunning { profiler.terminate() } }
        // The banner says the tracer is attached (stdout in text, stderr in JSON).
        let bannerHandle = arguments.contains("json") ? err.fileHandleForReading : out.fileHandleForReading
        var banner = ""
        let deadline = Date().addingTimeInterval(30)
        while !banner.contains("waiting for pid") && Date() < deadline && profiler.isRunning {
            banner += String(decoding: bannerHandle.availableData, as: UTF8.self)
        }
        XCTAssertTrue(banner.contains("waiting for pid \(pid)"), banner)
        workloadIn.fileHandleForWriting.write(Data("g".utf8))
        let workloadOutput = workloadOut.fileHandleForReading.readDataToEndOfFile()
        workload.waitUntilExit()
        XCTAssertEqual(workload.terminationStatus, 0, String(decoding: workloadOutput, as: UTF8.self))
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        profiler.waitUntilExit()
        let line = try XCTUnwrap(String(decoding: workloadOutput, as: UTF8.self).split(separator: "\n").last)
        let text = arguments.contains("json") ? stdout : banner + stdout
        return Run(profile: CommandResult(status: profiler.terminationStatus, stdout: text, stderr: stderr), lastLine: String(line))
    }

    func testJSONProfileOfAChildThatExitsAgreesWithTheFrames() throws {
        try requireBPF()
        let run = try profileWorkload(["--interval", "50ms", "--format", "json"])
        XCTAssertEqual(run.profile.status, 0, run.profile.stderr)
        let frames = try XCTUnwrap(try run.report.frames, "root reads frame numbers")
        let childTruth = try XCTUnwrap(frames.child).copied, parentTruth = frames.parent.copied
        XCTAssertEqual(childTruth, 4096, accuracy: pageSlack(4096))
        XCTAssertEqual(parentTruth, 2048, accuracy: pageSlack(2048))
        let profile = try decodeSnakeCaseJSON(CowTraceKit.ForkProfile.self, run.profile.stdout)
        XCTAssertEqual(profile.child, try run.report.child)
        XCTAssertEqual(profile.endedBy, .exit)
        XCTAssertEqual(Int(profile.childCopies), childTruth, accuracy: pageSlack(childTruth), "child copies vs frames")
        XCTAssertEqual(Int(profile.parentCopies), parentTruth, accuracy: pageSlack(parentTruth), "parent copies vs frames")
        // The timeline adds up to the totals, and its cumulative figure never goes down.
        XCTAssertEqual(profile.samples.reduce(0) { $0 + $1.childCopies }, profile.childCopies)
        XCTAssertEqual(profile.samples.reduce(0) { $0 + $1.parentCopies }, profile.parentCopies)
        let cumulative = profile.samples.map(\.bytesCopiedSoFar)
        XCTAssertEqual(cumulative, cumulative.sorted(), "bytes copied so far must never decrease")
        XCTAssertEqual(cumulative.last, profile.bytesCopied)
    }

    func testTextSummaryOfAChildThatExitsAgreesWithTheFrames() throws {
        try requireBPF()
        let run = try profileWorkload(["--interval", "50ms"])
        XCTAssertEqual(run.profile.status, 0, run.profile.stderr)
        let frames = try XCTUnwrap(try run.report.frames, "root reads frame numbers")
        // "copied:        24.0 MiB (6144 pages: parent 2048, child 4096)"
        let line = try XCTUnwrap(run.profile.stdout.split(separator: "\n").first { $0.hasPrefix("copied:") }, run.profile.stdout)
        let parent = try XCTUnwrap(line.split(separator: "parent ").last?.split(separator: ",").first.flatMap { Int($0) }, String(line))
        let child = try XCTUnwrap(line.split(separator: "child ").last?.split(separator: ")").first.flatMap { Int($0) }, String(line))
        XCTAssertEqual(child, try XCTUnwrap(frames.child).copied, accuracy: pageSlack(4096), String(line))
        XCTAssertEqual(parent, frames.parent.copied, accuracy: pageSlack(2048), String(line))
        // The timeline's CHILD column adds up to the summary's child figure.
        let rows = run.profile.stdout.split(separator: "\n").filter { $0.hasSuffix(")") == false && $0.contains("s ") && $0.first == " " }
        let columns = rows.map { $0.split(separator: " ", omittingEmptySubsequences: true) }.filter { $0.count == 4 }
        XCTAssertFalse(columns.isEmpty, run.profile.stdout)
        XCTAssertEqual(columns.compactMap { Int($0[2]) }.reduce(0, +), child, run.profile.stdout)
        let mib = columns.compactMap { Double($0[3]) }
        XCTAssertEqual(mib, mib.sorted(), "COPIED(MiB) must never decrease: \(run.profile.stdout)")
    }

    /// A real interpreter: a Python process holding 300 000 objects forks a
    /// child that walks them all, which writes every object's reference
    /// count (the copy-on-write cost of Python workers). Truth: the child's
    /// page frames at its end against the parent's just before the fork
    /// (both from pagemap): every changed frame is a page the child copied.
    func testPythonChildThatDirtiesRefcountsAndExits() throws {
        try requireBPF()
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("python3 is not installed")
        }
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-refcount-\(getpid()).py")
        try Self.refcountScript.write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        let run = try profile(command: [python, script.path], ["--interval", "50ms", "--format", "json"])
        XCTAssertEqual(run.profile.status, 0, run.profile.stderr)
        let truth = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.lastLine.utf8)) as? [String: Int], run.lastLine)
        let childCopied = try XCTUnwrap(truth["child_copied"])
        XCTAssertGreaterThan(childCopied, 1000, "walking 300 000 objects must dirty thousands of pages")
        let profile = try decodeSnakeCaseJSON(CowTraceKit.ForkProfile.self, run.profile.stdout)
        XCTAssertEqual(profile.child, Int32(try XCTUnwrap(truth["child"])))
        XCTAssertEqual(profile.endedBy, .exit)
        // The child's copies after its last pagemap read (json, exit) and of
        // pages it freed before it are not in the truth: the usual slack.
        XCTAssertEqual(Int(profile.childCopies), childCopied, accuracy: pageSlack(childCopied),
                       "fork-profile child copies vs the child's changed frames")
        print("python refcount fork: child copied \(childCopied) frames, fork-profile counted \(profile.childCopies); parent \(profile.parentCopies)")
    }

    static let refcountScript = #"""
        import json, os, sys

        def frames():
            """The raw pagemap entries of every private writable mapping.
            Every buffer is allocated before the first read, so that no page
            becomes present (or is copied) by the snapshot itself after its
            entry was read."""
            with open("/proc/self/maps") as maps:
                lines = maps.read().splitlines()
            regions = []
            for line in lines:
                fields = line.split()
                if fields[1][1] == "w" and fields[1][3] == "p":
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    regions.append((start, bytearray((end - start) // 4096 * 8)))
            with open("/proc/self/pagemap", "rb", buffering=0) as pm:
                for start, buf in regions:
                    pm.seek(start // 4096 * 8)
                    pm.readinto(buf)
            return regions

        def changed(before, after):
            """Pages present and anonymous in both whose frame differs."""
            old = {start: buf for start, buf in before}
            count = 0
            for start, buf in after:
                if start not in old:
                    continue
                for b, a in zip(memoryview(old[start]).cast("Q"), memoryview(buf).cast("Q")):
                    if b >> 63 and a >> 63 and not (b >> 61) & 1 and not (a >> 61) & 1 and (b ^ a) & ((1 << 55) - 1):
                        count += 1
            return count

        data = [str(i) * 3 for i in range(300_000)]
        print("ready", os.getpid(), flush=True)
        sys.stdin.read(1)
        reader, writer = os.pipe()
        before = frames()
        pid = os.fork()
        if pid == 0:
            total = 0
            for item in data:          # every item's refcount is written
                total += len(item)
            # Twice: the copies the first comparison makes itself are in the
            # second, and the second makes no new ones (those pages are the
            # child's own by then).
            changed(before, frames())
            copied = changed(before, frames())
            os.write(writer, json.dumps({"child": os.getpid(), "child_copied": copied}).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(reader, 4096).decode(), flush=True)
        """#
}
