import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// How a traced command's end reaches cowtrace's output and exit status:
/// a signal to cowtrace, a command killed by a signal.
final class StopAndExitCLITests: XCTestCase {
    /// Starts `cowtrace arguments`, waits until its `-c` command (named
    /// `child`) runs — cowtrace starts it only once the tracer is attached —
    /// then sends `signal` to cowtrace. The truth for "the command runs" is
    /// /proc, not cowtrace.
    private func signalled(_ signal: Int32, _ arguments: [String], child: String) throws -> (CommandResult, childPid: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productPath("cowtrace"))
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        var childPid: Int32?
        let deadline = Date().addingTimeInterval(20)
        while childPid == nil && Date() < deadline && process.isRunning {
            childPid = children(of: process.processIdentifier).first { comm(of: $0) == child }
            if childPid == nil { usleep(20_000) }
        }
        let pid = try XCTUnwrap(childPid, "cowtrace never started \(child)")
        kill(process.processIdentifier, signal)
        let started = Date()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        // sleep dies of the signal at once; the grace before SIGKILL is TracedRun.stopGraceSeconds (5 s).
        XCTAssertLessThan(Date().timeIntervalSince(started), 4, "cowtrace must stop promptly")
        return (CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                              stderr: String(decoding: stderr, as: UTF8.self)), pid)
    }

    private func children(of pid: Int32) -> [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    private func comm(of pid: Int32) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
    }

    private func finalRow(_ stdout: String, pid: Int32) throws -> [String: Any] {
        let table = try XCTUnwrap(stdout.split(separator: "\n").last { $0.contains("\"processes\"") }, stdout)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        XCTAssertEqual(object["final"] as? Bool, true)
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        return try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(pid) }, "no row for \(pid): \(processes)")
    }

    /// Ctrl-C: the command gets SIGINT too, the final table shows it killed,
    /// and cowtrace exits 130 like any interrupted program.
    func testSIGINTEndsTheCommandMarksItsRowAndExits130() throws {
        try requireBPF()
        let (r, pid) = try signalled(SIGINT, ["stat", "-c", "sleep", "30"], child: "sleep")
        XCTAssertEqual(r.status, 128 + SIGINT, r.stderr)
        XCTAssertTrue(r.stdout.contains("final totals"), r.stdout)
        let row = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix(String(format: "%8d ", pid)) }, r.stdout)
        XCTAssertTrue(row.contains("sleep*"), "the row must carry the exited marker: \(row)")
        XCTAssertTrue(r.stdout.contains("(* exited; \(pid) killed by SIGINT)"), r.stdout)
        XCTAssertEqual(kill(pid, 0), -1, "the command must not outlive cowtrace")
    }

    func testSIGTERMEndsTheCommandAndExits143() throws {
        try requireBPF()
        let (r, pid) = try signalled(SIGTERM, ["stat", "--format", "json", "-c", "sleep", "30"], child: "sleep")
        XCTAssertEqual(r.status, 128 + SIGTERM, r.stderr)
        let row = try finalRow(r.stdout, pid: pid)
        XCTAssertEqual(row["exited"] as? Bool, true, "\(row)")
        XCTAssertEqual(row["exit"] as? String, "killed by SIGTERM", "\(row)")
    }

    /// Without -c a signal is the ordinary way to stop: exit 0.
    func testSIGINTWithoutACommandExitsZero() throws {
        try requireBPF()
        let r = try runProduct("cowtrace", ["stat", "--all", "1"], interruptAfter: 2)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("final totals"), r.stdout)
    }

    /// A crashing command: the kernel's exit_code (stored by the BPF exit hook)
    /// names the signal in the row; cowtrace passes on 128 + 11 like a shell.
    func testCommandKilledBySIGSEGVIsNamed() throws {
        try requireBPF()
        let r = try runProduct("cowtrace", ["stat", "--format", "json", "-c", "sh", "-c", "kill -SEGV $$"])
        XCTAssertEqual(r.status, 128 + SIGSEGV, r.stderr)
        XCTAssertTrue(r.stderr.contains("sh -c kill -SEGV $$ killed by SIGSEGV"), r.stderr)
        XCTAssertFalse(r.stderr.contains("status 139"), r.stderr)
        let table = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.contains("\"processes\"") }, r.stdout)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let sh = try XCTUnwrap(processes.first { $0["comm"] as? String == "sh" }, "\(processes)")
        XCTAssertTrue((sh["exit"] as? String)?.hasPrefix("killed by SIGSEGV") == true, "\(sh)")
    }

    func testForksNamesTheCommandsSignal() throws {
        try requireBPF()
        let r = try runProduct("cowtrace", ["forks", "-c", "sh", "-c", "kill -SEGV $$"])
        XCTAssertEqual(r.status, 128 + SIGSEGV, r.stderr)
        XCTAssertTrue(r.stderr.contains("killed by SIGSEGV"), r.stderr)
    }

    /// A forked child (a subshell, no exec) that dies of SIGSEGV: the fork
    /// tree names the signal. The subshell prints its own pid (the truth,
    /// from /proc/self/stat's ppid field as seen by its child cut).
    func testForksTreeNamesAChildsSignal() throws {
        try requireBPF()
        let script = #"(p=$(cut -d" " -f4 /proc/self/stat); echo "subshell $p"; kill -SEGV $p); exit 0"#
        let r = try runProduct("cowtrace", ["forks", "--format", "json", "-c", "sh", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let subshell = try XCTUnwrap(lines.first { $0.hasPrefix("subshell ") }.flatMap { Int($0.dropFirst(9)) }, r.stdout)
        let tree = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(lines.last { $0.contains("\"forks\"") }).utf8)) as? [String: Any])
        let fork = try XCTUnwrap((tree["forks"] as? [[String: Any]])?.first { $0["child"] as? Int == subshell }, r.stdout)
        XCTAssertEqual(fork["ended_by"] as? String, "exit")
        XCTAssertEqual(fork["child_exit"] as? String, "killed by SIGSEGV")
        let text = try runProduct("cowtrace", ["forks", "-c", "sh", "-c", script])
        XCTAssertTrue(text.stdout.contains("and was killed by SIGSEGV"), text.stdout)
    }

    /// The recording keeps the kernel's exit code: the report's table names the crash.
    func testReportNamesARecordedCrash() throws {
        try requireBPF()
        let file = NSTemporaryDirectory() + "cowtrace-crash-\(UUID().uuidString).ctr"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let rec = try runProduct("cowtrace", ["record", "-o", file, "-c", "sh", "-c", "echo $$; kill -SEGV $$"])
        XCTAssertEqual(rec.status, 128 + SIGSEGV, rec.stderr)
        let pid = try XCTUnwrap(Int(rec.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), rec.stdout)
        let report = try runProduct("cowtrace", ["report", file, "--top", "0"])
        XCTAssertEqual(report.status, 0, report.stderr)
        XCTAssertTrue(report.stdout.contains("(* exited; \(pid) killed by SIGSEGV)"), report.stdout)
    }

    func testAPlainFailureIsStillItsStatus() throws {
        try requireBPF()
        let r = try runProduct("cowtrace", ["stat", "--format", "json", "-c", "sh", "-c", "exit 139"])
        XCTAssertEqual(r.status, 139, r.stderr)
        XCTAssertTrue(r.stderr.contains("exited with status 139"), r.stderr)
        let table = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.contains("\"processes\"") }, r.stdout)
        XCTAssertTrue(table.contains("\"exit\":\"exited with status 139\""), String(table))
    }
}
