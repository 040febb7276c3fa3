import CowTraceSelfTest
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace forks`: lineage records from the real kernel.
final class ForksCLITests: XCTestCase {
    private func run(_ arguments: [String]) throws -> CommandResult { try runProduct("cowtrace", arguments) }

    /// The parent copies 500 pages while the child lives; the child copies
    /// 1000, then execs: those 1000 are reported as copied before exec.
    func testForkThenExecReportsTheWastedCopies() throws {
        try requireBPF()
        let workload = builtProductsDirectory().appendingPathComponent("cowtrace-workload").path
        let r = try run(["forks", "--format", "json", "-c", workload, "--pages", "4096",
                         "parent:write:0:500", "child:write:1000:2000", "child:exec"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let report = try JSONDecoder().decode(Workload.Report.self, from: Data(try XCTUnwrap(lines.first { $0.contains("\"workload\"") }).utf8))
        let tree = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(lines.last { $0.contains("\"forks\"") }).utf8)) as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(lines.last { $0.contains("\"forks\"") }).hasPrefix("{\"schema_version\":1,"), true)
        XCTAssertEqual(tree["schema_version"] as? Int, 1)
        let forks = try XCTUnwrap(tree["forks"] as? [[String: Any]])
        let fork = try XCTUnwrap(forks.first { $0["child"] as? Int == Int(report.child ?? 0) })
        XCTAssertEqual(fork["parent"] as? Int, Int(report.parent))
        XCTAssertEqual(fork["ended_by"] as? String, "exec")
        XCTAssertEqual(fork["copies_before_exec"] as! Int, 1000, accuracy: Scenario.tolerance(for: 1000))
        XCTAssertEqual(fork["parent_copies_during"] as! Int, 500, accuracy: Scenario.tolerance(for: 500))
        let latency = try XCTUnwrap(fork["latency_ns"] as? Int, "the fork syscall must have been timed")
        XCTAssertGreaterThan(latency, 1_000)          // more than 1 µs
        XCTAssertLessThan(latency, 1_000_000_000)     // less than 1 s
        // 4096 pages of region plus the program's own mappings.
        XCTAssertGreaterThanOrEqual(fork["mapped_pages"] as! Int, 4096)
    }

    /// The snapshot pattern (a BGSAVE-like child): the child writes 2048
    /// pages and exits without exec while the parent writes 1024 others at
    /// the same time. Truth: the workload's own page frames.
    func testSnapshotChildThatExitsKeepsItsCopies() throws {
        try requireBPF()
        let workload = productPath("cowtrace-workload")
        let steps = ["--pages", "4096", "child:write:0:2048+parent:write:2048:3072", "child:exit"]
        let json = try run(["forks", "--format", "json", "-c", workload] + steps)
        XCTAssertEqual(json.status, 0, json.stderr)
        let lines = json.stdout.split(separator: "\n")
        let report = try JSONDecoder().decode(Workload.Report.self, from: Data(try XCTUnwrap(lines.first { $0.contains("\"workload\"") }).utf8))
        let frames = try XCTUnwrap(report.frames, "root reads frame numbers")
        let childTruth = try XCTUnwrap(frames.child).copied, parentTruth = frames.parent.copied
        XCTAssertEqual(childTruth, 2048, accuracy: pageSlack(2048), "the frames must show the planned copies")
        XCTAssertEqual(parentTruth, 1024, accuracy: pageSlack(1024))
        let tree = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(lines.last { $0.contains("\"forks\"") }).utf8)) as? [String: Any])
        let fork = try XCTUnwrap((tree["forks"] as? [[String: Any]])?.first { $0["child"] as? Int == Int(report.child ?? 0) })
        XCTAssertEqual(fork["ended_by"] as? String, "exit")
        XCTAssertEqual(fork["child_copies"] as! Int, childTruth, accuracy: pageSlack(childTruth), "JSON child_copies vs frames")
        XCTAssertEqual(fork["parent_copies_during"] as! Int, parentTruth, accuracy: pageSlack(parentTruth), "JSON parent_copies_during vs frames")

        let text = try run(["forks", "-c", workload] + steps)
        XCTAssertEqual(text.status, 0, text.stderr)
        let textReport = try JSONDecoder().decode(Workload.Report.self, from: Data(try XCTUnwrap(text.stdout.split(separator: "\n").first { $0.contains("\"workload\"") }).utf8))
        let line = try XCTUnwrap(text.stdout.split(separator: "\n").first { $0.contains("→ \(textReport.child ?? 0) ") }, text.stdout)
        let childCopied = try XCTUnwrap(number(after: "the child copied ", in: line), String(line))
        let parentCopied = try XCTUnwrap(number(after: "the parent copied ", in: line), String(line))
        XCTAssertTrue(line.contains("and exited"), String(line))
        XCTAssertEqual(childCopied, try XCTUnwrap(textReport.frames?.child).copied, accuracy: pageSlack(2048), String(line))
        XCTAssertEqual(parentCopied, try XCTUnwrap(textReport.frames).parent.copied, accuracy: pageSlack(1024), String(line))
    }

    private func number(after prefix: String, in line: Substring) -> Int? {
        guard let r = line.range(of: prefix) else { return nil }
        return Int(line[r.upperBound...].prefix { $0.isNumber })
    }

    func testTextTreeNamesTheWaste() throws {
        try requireBPF()
        let workload = builtProductsDirectory().appendingPathComponent("cowtrace-workload").path
        let r = try run(["forks", "-c", workload, "--pages", "1024", "child:write:0:300", "child:exec"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("wasted by fork+exec"), r.stdout)
        XCTAssertTrue(r.stdout.contains("1 followed by exec"), r.stdout)
    }

    func testNothingToTrace() throws {
        let r = try run(["forks"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("say what to trace"), r.stderr)
    }
}
