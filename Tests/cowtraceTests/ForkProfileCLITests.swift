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
        let report: Workload.Report
    }

    /// Starts the workload, profiles its fork with `arguments`, lets it go.
    private func profileWorkload(_ arguments: [String]) throws -> Run {
        let workload = Process()
        workload.executableURL = URL(fileURLWithPath: productPath("cowtrace-workload"))
        workload.arguments = ["--handshake"] + Self.steps
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
        XCTAssertEqual(workload.terminationStatus, 0)
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        profiler.waitUntilExit()
        let line = try XCTUnwrap(String(decoding: workloadOutput, as: UTF8.self).split(separator: "\n").last)
        let report = try JSONDecoder().decode(Workload.Report.self, from: Data(line.utf8))
        let text = arguments.contains("json") ? stdout : banner + stdout
        return Run(profile: CommandResult(status: profiler.terminationStatus, stdout: text, stderr: stderr), report: report)
    }

    func testJSONProfileOfAChildThatExitsAgreesWithTheFrames() throws {
        try requireBPF()
        let run = try profileWorkload(["--interval", "50", "--format", "json"])
        XCTAssertEqual(run.profile.status, 0, run.profile.stderr)
        let frames = try XCTUnwrap(run.report.frames, "root reads frame numbers")
        let childTruth = try XCTUnwrap(frames.child).copied, parentTruth = frames.parent.copied
        XCTAssertEqual(childTruth, 4096, accuracy: pageSlack(4096))
        XCTAssertEqual(parentTruth, 2048, accuracy: pageSlack(2048))
        let profile = try JSONDecoder().decode(CowTraceKit.ForkProfile.self, from: Data(run.profile.stdout.utf8))
        XCTAssertEqual(profile.child, run.report.child)
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
        let run = try profileWorkload(["--interval", "50"])
        XCTAssertEqual(run.profile.status, 0, run.profile.stderr)
        let frames = try XCTUnwrap(run.report.frames, "root reads frame numbers")
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
}
