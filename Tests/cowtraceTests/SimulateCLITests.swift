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
}
