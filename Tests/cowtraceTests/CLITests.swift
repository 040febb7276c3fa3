import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest

/// The cowtrace executable, end to end: bad input gets one line and a
/// non-zero status; tracing commands print what the kernel counted.
final class CLITests: XCTestCase {
    typealias Result = CommandResult

    private func cowtrace(_ arguments: [String], asNobody: Bool = false, interruptAfter: Double? = nil, environment: [String: String] = [:]) throws -> Result {
        let dropPrivileges = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
        return try runProduct("cowtrace", arguments, environment: environment, interruptAfter: interruptAfter,
                              through: asNobody ? dropPrivileges : [])
    }

    private func assertOneLineError(_ r: Result, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "must fail", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(text), "stderr was: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").first { $0.hasPrefix("Error:") }.map { _ in 1 }, 1, "one Error: line", file: file, line: line)
    }

    func testUnknownFlag() throws {
        assertOneLineError(try cowtrace(["stat", "--all", "--bogus"]), contains: "Unknown option '--bogus'")
    }

    func testNothingToTraceSaysWhatToPass() throws {
        assertOneLineError(try cowtrace(["stat"]), contains: "-p PID, -c COMMAND..., --cgroup PATH or --all")
    }

    func testBadTierName() throws {
        assertOneLineError(try cowtrace(["stat", "--all", "--tier", "uprobe"]), contains: "uprobe")
    }

    func testNotRootGetsThePrivilegeError() throws {
        let asRoot = geteuid() == 0
        let r = try cowtrace(["stat", "--all", "1", "1"], asNobody: asRoot)
        assertOneLineError(r, contains: "needs")
        XCTAssertTrue(r.stderr.contains("run it as root") || r.stderr.contains("CAP_BPF"), r.stderr)
    }

    func testKernelWithoutBTF() throws {
        try requireBPF()
        let r = try cowtrace(["stat", "--all"], environment: ["COWTRACE_BTF_PATH": "/nonexistent/vmlinux"])
        assertOneLineError(r, contains: "this kernel has no BTF (/nonexistent/vmlinux is missing)")
    }

    func testBadPid() throws {
        try requireBPF()
        assertOneLineError(try cowtrace(["stat", "-p", "2147483000", "1", "1"]), contains: "no process with pid 2147483000")
    }

    func testBadCgroup() throws {
        assertOneLineError(try cowtrace(["stat", "--cgroup", "/nonexistent/cgroup"]), contains: "bad cgroup /nonexistent/cgroup")
    }

    func testCommandThatCannotStart() throws {
        try requireBPF()
        assertOneLineError(try cowtrace(["stat", "-c", "/nonexistent/program", "arg"]), contains: "cannot start `/nonexistent/program arg`")
    }

    /// stat -c: the child of the command is counted, the final table is JSON.
    func testStatCommandPrintsFinalJSONWithTheChildsCopies() throws {
        try requireBPF()
        let workload = builtProductsDirectory().appendingPathComponent("cowtrace-workload").path
        let r = try cowtrace(["stat", "--format", "json", "-c", workload, "--pages", "4096", "child:write:0:3000", "child:exit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let report = try JSONDecoder().decode(Workload.Report.self, from: Data(try XCTUnwrap(lines.first { $0.contains("\"workload\"") }).utf8))
        let table = try XCTUnwrap(lines.last { $0.contains("\"processes\"") })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        XCTAssertEqual(object["final"] as? Bool, true)
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let child = try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(report.child ?? 0) })
        XCTAssertEqual(child["copies"] as! Int, 3000, accuracy: Scenario.tolerance(for: 3000))
        XCTAssertEqual(child["exited"] as? Bool, true)
        let parent = try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(report.parent) })
        XCTAssertEqual(parent["forks"] as? Int, 1)
    }

    /// Ctrl-C: the tracer detaches, stops the command and prints the final table.
    func testInterruptPrintsFinalTableAndExitsCleanly() throws {
        try requireBPF()
        let start = Date()
        let r = try cowtrace(["stat", "-c", "sleep", "30"], interruptAfter: 1.5)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("final totals"), r.stdout)
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
    }

    /// Like time(1): the command's failure is cowtrace's exit status, after the table.
    func testFailingCommandsStatusIsPassedOn() throws {
        try requireBPF()
        let r = try cowtrace(["stat", "-c", "sh", "-c", "exit 3"])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stdout.contains("final totals"), r.stdout)
        XCTAssertTrue(r.stderr.contains("exited with status 3"), r.stderr)
    }

    func testDemoNumbersMatchTheWorkload() throws {
        try requireBPF()
        let r = try cowtrace(["demo"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("✓ child copies"), r.stdout)
        XCTAssertFalse(r.stdout.contains("✗"), r.stdout)
    }

    func testDoctorNamesEveryTier() throws {
        try requireBPF()
        let r = try cowtrace(["doctor"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for tier in AttachTier.allCases { XCTAssertTrue(r.stdout.contains("tier \(tier.rawValue)"), r.stdout) }
        XCTAssertTrue(r.stdout.contains(" OK"), r.stdout)
    }

    func testHelpTeachesWithExamples() throws {
        let r = try cowtrace(["stat", "--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("Examples:"))
        XCTAssertTrue(r.stdout.contains("cowtrace stat -c"))
    }
}
