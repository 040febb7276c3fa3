import CowTraceSelfTest
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
        XCTAssertTrue(table.hasPrefix("{\"schema_version\":1,\"time\":"), String(table))
        XCTAssertEqual(object["final"] as? Bool, true)
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let child = try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(report.child ?? 0) })
        XCTAssertEqual(child["copies"] as! Int, 3000, accuracy: Scenario.tolerance(for: 3000))
        XCTAssertEqual(child["exited"] as? Bool, true)
        let parent = try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(report.parent) })
        XCTAssertEqual(parent["forks"] as? Int, 1)
    }

    /// --threads: the child writes 2000 pages from a thread named cw-writer,
    /// then 1000 from its main thread. The process's copies are split between
    /// its two threads as the workload wrote them (slack: Scenario.tolerance,
    /// for the start-up and libc pages both threads touch).
    func testStatThreadsSplitsTheChildsCopiesByThread() throws {
        try requireBPF()
        let workload = builtProductsDirectory().appendingPathComponent("cowtrace-workload").path
        let r = try cowtrace(["stat", "--threads", "--format", "json", "-c", workload, "--pages", "4096",
                              "child:twrite:0:2000", "child:write:2000:3000", "child:exit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let report = try JSONDecoder().decode(Workload.Report.self, from: Data(try XCTUnwrap(lines.first { $0.contains("\"workload\"") }).utf8))
        let table = try XCTUnwrap(lines.last { $0.contains("\"processes\"") })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let child = try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(report.child ?? 0) })
        XCTAssertEqual(child["copies"] as! Int, 3000, accuracy: Scenario.tolerance(for: 3000))
        let threads = try XCTUnwrap(child["threads"] as? [[String: Any]], "no threads array: \(child)")
        let writer = try XCTUnwrap(threads.first { $0["comm"] as? String == "cw-writer" }, "\(threads)")
        XCTAssertEqual(writer["copies"] as! Int, 2000, accuracy: Scenario.tolerance(for: 2000))
        XCTAssertNotEqual(writer["tid"] as? Int, Int(report.child ?? 0))
        XCTAssertEqual(writer["exited"] as? Bool, true)
        let main = try XCTUnwrap(threads.first { $0["tid"] as? Int == Int(report.child ?? 0) }, "\(threads)")
        XCTAssertEqual(main["copies"] as! Int, 1000, accuracy: Scenario.tolerance(for: 1000))
        // The threads' copies add up to the process's.
        XCTAssertEqual(threads.map { $0["copies"] as! Int }.reduce(0, +), child["copies"] as! Int)
    }

    /// -p PID: the kernel claims the process's slot (register_process), and
    /// the children it forks from then on are counted.
    func testStatPidCountsTheForkedChildsCopies() throws {
        try requireBPF()
        let workload = builtProductsDirectory().appendingPathComponent("cowtrace-workload").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: workload)
        process.arguments = ["--handshake", "--pages", "4096", "child:write:0:2500", "child:exit"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        // "ready PID": the region is prepared, the fork waits for our byte.
        let ready = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        XCTAssertTrue(ready.hasPrefix("ready"), ready)
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
            input.fileHandleForWriting.write(Data("g".utf8))
        }
        let r = try cowtrace(["stat", "--format", "json", "-p", "\(pid)", "1"], interruptAfter: 5)
        XCTAssertEqual(r.status, 0, r.stderr)
        let table = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.contains("\"processes\"") })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let child = try XCTUnwrap(processes.first { $0["ppid"] as? Int == Int(pid) }, "\(processes)")
        XCTAssertEqual(child["copies"] as! Int, 2500, accuracy: Scenario.tolerance(for: 2500))
        let parent = try XCTUnwrap(processes.first { $0["pid"] as? Int == Int(pid) }, "\(processes)")
        XCTAssertEqual(parent["forks"] as? Int, 1)
    }

    /// Ctrl-C: the tracer detaches, stops the command and prints the final
    /// table; the command did not finish, so cowtrace exits 130.
    /// --max-exited: 200 short children, at most 50 listed, the rest folded
    /// into "folded_exited" with nothing lost. Truth: the workload's storm
    /// children each write every one of its 64 pages after the fork, so each
    /// copies at least 64; slack: up to 16 more pages per child (its stack,
    /// libc's data, the parent's own copies after each fork) and 1% below
    /// for counts the kernel could not attribute.
    func testStatMaxExitedFoldsTheOldestAndKeepsTheSums() throws {
        try requireBPF()
        let workload = builtProductsDirectory().appendingPathComponent("cowtrace-workload").path
        let children = 200, pages = 64
        let r = try cowtrace(["stat", "--max-exited", "50", "--format", "json", "-c", workload, "--pages", "\(pages)",
                              "--storm", "\(children)", "--parallel", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(lines.first { $0.contains("\"workload\"") }).utf8)) as? [String: Any])
        XCTAssertEqual(report["forks"] as? Int, children)
        let table = try XCTUnwrap(lines.last { $0.contains("\"processes\"") })
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        let folded = try XCTUnwrap(object["folded_exited"] as? [String: Any])
        let live = processes.filter { $0["exited"] as? Bool != true }.count
        let listedExited = processes.count - live
        XCTAssertLessThanOrEqual(processes.count, 50 + live, "the bound")
        XCTAssertEqual(listedExited + (folded["processes"] as? Int ?? -1), children + 1, "every child and the parent: listed or folded")
        XCTAssertEqual(folded["processes"] as? Int, children + 1 - 50, "each of them copied, so exactly 50 are listed")
        let copies = processes.reduce(0) { $0 + ($1["copies"] as? Int ?? 0) } + (folded["copies"] as? Int ?? 0)
        XCTAssertGreaterThanOrEqual(Double(copies), Double(children * pages) * 0.99, "listed \(copies - (folded["copies"] as? Int ?? 0)) + folded")
        XCTAssertLessThanOrEqual(copies, children * (pages + 16))
        let forks = processes.reduce(0) { $0 + ($1["forks"] as? Int ?? 0) } + (folded["forks"] as? Int ?? 0)
        XCTAssertEqual(forks, children, "the parent's forks, listed or folded")
    }

    func testInterruptPrintsFinalTableAndExitsCleanly() throws {
        try requireBPF()
        let start = Date()
        let r = try cowtrace(["stat", "-c", "sleep", "30"], interruptAfter: 1.5)
        XCTAssertEqual(r.status, 130, r.stderr)
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
