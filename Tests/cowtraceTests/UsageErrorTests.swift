import CowTraceTestSupport
import Foundation
import XCTest

/// Bad command lines: exit 64 with one Error: line that names the problem,
/// before anything is attached (no BPF needed).
final class UsageErrorTests: XCTestCase {
    private func assertUsageError(_ arguments: [String], says text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        // A regression would start tracing and never end (a NaN interval never elapses): timeout(1) bounds it.
        let r = try runProduct("cowtrace", arguments, through: ["/usr/bin/timeout", "30"])
        XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)", file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        XCTAssertEqual(errors.count, 1, "one Error: line for \(arguments): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(errors.first?.contains(text) == true, "\(arguments): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stdout, "", file: file, line: line)
    }

    /// ArgumentParser checks values before it looks for unknown options; the misspelling must win.
    func testAnUnknownOptionIsNamedBeforeAnyOtherComplaint() throws {
        try assertUsageError(["stat", "--pdi", "1234"], says: "Unknown option '--pdi'")
        try assertUsageError(["stat", "--bogus"], says: "Unknown option '--bogus'")
        try assertUsageError(["forks", "--bogus", "--duration", "nan"], says: "Unknown option '--bogus'")
        try assertUsageError(["fork-profile", "-p", "0", "--intervall", "5"], says: "Unknown option '--intervall'")
    }

    /// With no unknown option, the commands' own checks still run, through the option groups too.
    func testTheCommandsOwnChecksStillRun() throws {
        try assertUsageError(["stat"], says: "say what to trace: -p PID, -c COMMAND..., --cgroup PATH or --all")
        try assertUsageError(["stat", "--all", "--max-processes", "0"], says: "--max-processes must be at least 1")
        try assertUsageError(["stat", "-p", "0"], says: "a pid must be a positive number")
        try assertUsageError(["simulate"], says: "say which scenario to run")
    }

    /// NaN never elapses and 1e9 s overflows the loops' nanoseconds: every
    /// interval, duration and timeout goes through the same check.
    func testNaNInfiniteAndAbsurdIntervalsAreRefused() throws {
        let day = "at most 86400 (one day)", dayMs = "at most 86400000 (one day)"
        let cases: [([String], String)] = [
            (["stat", "--all", "nan", "1"], "interval nan: expected a positive number of seconds, \(day)"),
            (["stat", "--all", "1e9", "1"], "interval 1000000000: expected a positive number of seconds, \(day)"),
            (["stat", "--all", "inf"], "interval inf:"),
            (["stat", "--all", "86400.5"], "interval 86400.5:"),
            (["stat", "--all", "0"], "interval 0:"),
            (["hist", "--all", "nan"], "interval nan: expected a positive number of seconds, \(day)"),
            (["hist", "--all", "--burst-interval", "0"], "--burst-interval 0: expected a positive number of milliseconds, \(dayMs)"),
            (["hist", "--all", "--burst-interval", "86400001"], "--burst-interval 86400001:"),
            (["forks", "--all", "--duration", "1e9"], "--duration 1000000000: expected a positive number of seconds, \(day)"),
            (["oom", "--duration", "nan"], "--duration nan:"),
            (["record", "-o", "/tmp/never-written.ctrace", "--all", "--duration", "inf"], "--duration inf: expected a positive number of seconds, \(day), or a time like 500ms, 30s, 2m"),
            (["record", "-o", "/tmp/never-written.ctrace", "--all", "--duration", "25h"], "--duration 25h:"),
            (["record", "-o", "/tmp/never-written.ctrace", "--all", "--flush-interval", "nan"], "--flush-interval nan:"),
            (["fork-profile", "-p", "1", "--interval", "99999999999"], "--interval 99999999999: expected a positive number of milliseconds, \(dayMs)"),
            (["fork-profile", "-p", "1", "--timeout", "nan"], "--timeout nan: expected 0 (wait forever) or a positive number of seconds, \(day)"),
            (["redis", "--interval", "0"], "--interval 0:"),
            (["redis", "--timeout", "1e10"], "--timeout 10000000000:"),
            (["oom-selftest", "--timeout", "inf"], "--timeout inf:"),
        ]
        for (arguments, text) in cases { try assertUsageError(arguments, says: text) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never-written.ctrace"))
    }
}
