import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace simulate`'s exit status: a failed step fails the run unless the
/// scenario declares it with `failed_steps`.
final class SimulateCLITests: XCTestCase {
    private func scenarioFile(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "cowtrace-simulate-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private let exitsNobody = """
        name: exits-nobody
        steps:
          - spawn: app
            pid: 1000
          - exit: nobody
        """

    func testAFailedStepFailsTheRun() throws {
        let path = try scenarioFile(exitsNobody)
        for format in ["text", "json"] {
            let r = try runProduct("cowtrace", ["simulate", path, "--format", format])
            XCTAssertEqual(r.status, 1, r.stderr)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
            XCTAssertEqual(errors, ["Error: step 2 of scenario exits-nobody failed: no process named 'nobody'; fix the step, or add `- failed_steps: 1` to the expect: list if the scenario means it to fail"], r.stderr)
        }
    }

    func testADeclaredFailureIsChecked() throws {
        let declared = try runProduct("cowtrace", ["simulate", try scenarioFile(exitsNobody + "\nexpect:\n  - failed_steps: 1\n")])
        XCTAssertEqual(declared.status, 0, declared.stderr)
        XCTAssertTrue(declared.stdout.contains("step 2 failed: no process named 'nobody'"), declared.stdout)
        let wrongCount = try runProduct("cowtrace", ["simulate", try scenarioFile(exitsNobody + "\nexpect:\n  - failed_steps: 0\n")])
        XCTAssertEqual(wrongCount.status, 1, wrongCount.stderr)
        XCTAssertTrue(wrongCount.stderr.contains("0 failed steps (got 1)"), wrongCount.stderr)
    }

    /// The built-ins whose steps fail on purpose (OOM kills, ENOMEM) say so, and pass.
    func testEveryBuiltinPasses() throws {
        let list = try runProduct("cowtrace", ["simulate", "--list"])
        let names = list.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        XCTAssertEqual(names.count, 10, list.stdout)
        for name in names {
            let r = try runProduct("cowtrace", ["simulate", name, "--summary"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
        }
    }

    private struct Report: Decodable {
        struct Step: Decodable { var index: Int; var faults: [String: Int]; var error: String? }
        struct Host: Decodable { var ramKb: Int; var committedAsKb: Int; var oomKills: Int }
        struct Process: Decodable { var name: String; var state: String; var privateDirtyKb: Int; var oomScoreAdj: Int }
        var name: String
        var steps: [Step]
        var oomEvents: [String]
        var processes: [Process]
        var host: Host
    }

    /// `--format json`: snake_case keys and `schema_version` (docs/exports.md),
    /// with the figures the 8 GiB machine's arithmetic gives (Scenario+BuiltinTests).
    func testJSONIsSnakeCaseWithTheModelsFigures() throws {
        let killed = try runProduct("cowtrace", ["simulate", "oom-8g", "--format", "json"])
        XCTAssertEqual(killed.status, 0, killed.stderr)
        let r = try decodeSnakeCaseJSON(Report.self, killed.stdout)
        XCTAssertEqual(r.name, "oom-8g")
        XCTAssertEqual(r.host.ramKb, 8 * 1024 * 1024)
        // 8 GiB = 2097152 pages, minus the 6 GiB parent's 1572864 and 2 x 3079 table pages.
        XCTAssertEqual(r.steps[4].faults, ["copy": 518_130, "oom": 1])
        XCTAssertEqual(r.host.oomKills, 1)
        XCTAssertEqual(r.oomEvents.first?.hasPrefix("Out of memory: Killed process 1001 (app)"), true, "\(r.oomEvents)")
        XCTAssertEqual(r.processes.first { $0.name == "child" }?.state, "killed (OOM)")

        let refused = try runProduct("cowtrace", ["simulate", "oom-8g-never", "--format", "json"])
        XCTAssertEqual(refused.status, 0, refused.stderr)
        let never = try decodeSnakeCaseJSON(Report.self, refused.stdout)
        XCTAssertEqual(never.steps[3].error?.hasPrefix("ENOMEM: fork"), true)
        XCTAssertEqual(never.host.committedAsKb, 6 * 1024 * 1024, "Committed_AS: the 6 GiB parent")
    }
}
