import Foundation
import XCTest

/// deploy/prometheus/cowtrace-rules.yml through Debian's real promtool: the
/// rules parse, and their unit tests (cowtrace-rules.test.yml) pass.
final class AlertRulesTests: XCTestCase {
    static let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../deploy/prometheus").standardized

    func promtool(_ arguments: [String]) throws -> (Int32, String) {
        guard let path = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            if ProcessInfo.processInfo.environment["COWTRACE_REQUIRE_BPF"] == "1" { XCTFail("promtool missing: scripts/setup installs prometheus") }
            throw XCTSkip("promtool not installed (apt install prometheus)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        p.currentDirectoryURL = Self.deploy
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    func testRulesParse() throws {
        let (status, text) = try promtool(["check", "rules", "cowtrace-rules.yml"])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("3 rules found"), text)
    }

    func testRuleUnitTestsPass() throws {
        let (status, text) = try promtool(["test", "rules", "cowtrace-rules.test.yml"])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("SUCCESS"), text)
    }
}
