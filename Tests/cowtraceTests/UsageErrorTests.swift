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
        try assertUsageError(["stat", "--all", "--max-exited=-1"], says: "--max-exited must be 0 (keep all) or more, not -1")
        try assertUsageError(["stat", "-p", "0"], says: "a pid must be a positive number")
        try assertUsageError(["simulate"], says: "say which scenario to run")
    }

    /// NaN never elapses and 1e9 s overflows the loops' nanoseconds: every
    /// interval, duration and timeout goes through the same parser and check.
    func testNaNInfiniteAndAbsurdIntervalsAreRefused() throws {
        let forms = "expected a positive time such as 500ms, 30s, 2m or 1h (a bare number is seconds), at most 24h"
        let cases: [([String], String)] = [
            (["stat", "--all", "nan", "1"], "interval nan: \(forms)"),
            (["stat", "--all", "1e9", "1"], "interval 1e9: \(forms)"),
            (["stat", "--all", "inf"], "interval inf:"),
            (["stat", "--all", "86400.5"], "interval 86400.5:"),
            (["stat", "--all", "0"], "interval 0:"),
            (["hist", "--all", "nan"], "interval nan: \(forms)"),
            (["hist", "--all", "--burst-interval", "0"], "--burst-interval 0: \(forms)"),
            (["hist", "--all", "--burst-interval", "86401"], "--burst-interval 86401:"),
            (["forks", "--all", "--duration", "1e9"], "--duration 1e9: \(forms)"),
            (["oom", "--duration", "nan"], "--duration nan:"),
            (["record", "-o", "/tmp/never-written.ctrace", "--all", "--duration", "inf"], "--duration inf: \(forms)"),
            (["record", "-o", "/tmp/never-written.ctrace", "--all", "--duration", "25h"], "--duration 25h:"),
            (["record", "-o", "/tmp/never-written.ctrace", "--all", "--flush-interval", "nan"], "--flush-interval nan:"),
            (["fork-profile", "-p", "1", "--interval", "99999999999"], "--interval 99999999999: \(forms)"),
            (["fork-profile", "-p", "1", "--timeout", "nan"], "--timeout nan: expected 0 (wait forever) or a positive time such as 500ms"),
            (["redis", "--interval", "0"], "--interval 0:"),
            (["redis", "--timeout", "1e10"], "--timeout 1e10:"),
            (["oom-selftest", "--timeout", "inf"], "--timeout inf:"),
        ]
        for (arguments, text) in cases { try assertUsageError(arguments, says: text) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never-written.ctrace"))
    }

    /// What is not a time at all (a unit cowtrace does not know, a missing
    /// number, words) gets the same one line naming the accepted forms.
    func testValuesThatAreNotTimesNameTheAcceptedForms() throws {
        let forms = "a positive time such as 500ms, 30s, 2m or 1h (a bare number is"
        let cases: [[String]] = [
            ["stat", "--all", "5x"], ["stat", "--all", "s", "1"], ["hist", "--all", "ten"],
            ["forks", "--all", "--duration", "2d"], ["oom", "--duration", "1 h"],
            ["record", "-o", "/tmp/never-written.ctrace", "--all", "--duration=-5s"],
            ["hist", "--all", "--burst-interval", "1ks"], ["fork-profile", "-p", "1", "--interval", "fast"],
            ["redis", "--timeout=-1"], ["oom-selftest", "--timeout", "0"],
        ]
        for arguments in cases { try assertUsageError(arguments, says: forms) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never-written.ctrace"))
    }

    /// Every form is accepted by every time option: run as nobody, each of
    /// these gets past the parser and fails only at attaching (exit 1, "needs"
    /// root or CAP_BPF), where a refused value would exit 64 before.
    func testEveryTimeOptionTakesEveryForm() throws {
        let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
        let cases: [[String]] = [
            ["stat", "--all", "500ms", "1"], ["stat", "--all", "2m"], ["stat", "--all", "1h", "1"], ["stat", "--all", "2.5", "1"],
            ["hist", "--all", "30s", "1"], ["hist", "--all", "--burst-interval", "50ms"], ["hist", "--all", "--burst-interval", "1s"],
            ["forks", "--all", "--duration", "500ms"], ["forks", "--all", "--duration", "1h"],
            ["oom", "--duration", "2m"], ["oom", "--duration", "10"],
            ["record", "-o", "/nonexistent-dir/x.ctr", "--all", "--duration", "30s", "--flush-interval", "100ms"],
            ["fork-profile", "-p", "1", "--interval", "250ms", "--timeout", "2m"], ["fork-profile", "-p", "1", "--interval", "2s", "--timeout", "0"],
            ["oom-selftest", "--timeout", "90s"],
        ]
        for arguments in cases {
            let r = try runProduct("cowtrace", arguments, through: ["/usr/bin/timeout", "30"] + nobody)
            XCTAssertEqual(r.status, 1, "\(arguments) must get past the parser and fail at attaching: \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("expected a positive time"), "\(arguments): \(r.stderr)")
        }
    }

    /// Every file cowtrace writes keeps an existing file unless --force:
    /// one line, exit 64, before anything is attached, the file untouched.
    func testExistingOutputFilesNeedForce() throws {
        let existing = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-exists-\(UUID().uuidString)").path
        try "keep".write(toFile: existing, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: existing) }
        let says = "the file exists; pass --force to overwrite it, or choose another path"
        try assertUsageError(["record", "-o", existing, "--all"], says: "-o \(existing): \(says)")
        try assertUsageError(["report", "/nonexistent.ctr", "-o", existing], says: "-o \(existing): \(says)")
        try assertUsageError(["stat", "--all", "--stacks", existing], says: "--stacks \(existing): \(says)")
        XCTAssertEqual(try String(contentsOfFile: existing, encoding: .utf8), "keep")
    }

    /// Mistakes on the command line that used to be found only while running
    /// (and exit 1) are usage errors: a --cgroup that is no cgroup, a --listen
    /// that is no address, a scenario that is neither built in nor a file.
    func testMistakesFoundLateAreStillUsageErrors() throws {
        try assertUsageError(["stat", "--cgroup", "/nonexistent/cgroup"], says: "bad cgroup /nonexistent/cgroup: no such directory")
        try assertUsageError(["hist", "--cgroup", "/tmp"], says: "bad cgroup /tmp: not a cgroup (it has no cgroup.procs)")
        try assertUsageError(["serve", "--listen", "localhost"], says: "bad listen address 'localhost': expected IPV4:PORT")
        try assertUsageError(["serve", "--cgroup", "/nonexistent/cgroup"], says: "bad cgroup /nonexistent/cgroup")
        try assertUsageError(["simulate", "no-such-scenario"], says: "no built-in scenario or file named 'no-such-scenario'")
    }

    /// What goes wrong at run time stays 1: a recording that is not there.
    func testRuntimeErrorsExitOne() throws {
        let r = try runProduct("cowtrace", ["report", "/nonexistent/run.ctr"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }.count, 1, r.stderr)
    }

    /// serve takes the shared selection options, with their checks.
    func testServeChecksItsSelectionLikeTheOthers() throws {
        try assertUsageError(["serve", "--all", "-p", "5"], says: "--all traces everything already: drop -p, -c and --cgroup")
        try assertUsageError(["serve", "-p", "0"], says: "a pid must be a positive number")
        try assertUsageError(["serve", "--exit-with-command"], says: "--exit-with-command needs -c COMMAND...")
        try assertUsageError(["serve", "--pdi", "1"], says: "Unknown option '--pdi'")
    }
}
