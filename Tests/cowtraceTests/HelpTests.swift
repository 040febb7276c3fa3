import CowTraceTestSupport
import Foundation
import XCTest

/// `cowtrace SUB --help` as a user at an 80-column terminal reads it.
final class HelpTests: XCTestCase {
    /// The hidden subcommands, which `cowtrace --help` does not list.
    private static let hidden = ["oom-selftest", "bench-floor"]

    /// Arguments a subcommand needs before the parser looks at --format.
    private static let required: [String: [String]] = [
        "fork-profile": ["-p", "1"], "record": ["-o", "/nonexistent/run.ctr"], "report": ["/nonexistent/run.ctr"],
        "replay": ["/nonexistent/run.ctr"], "check": ["/nonexistent/run.ctr"],
    ]

    private func subcommands() throws -> [String] {
        let help = try runProduct("cowtrace", ["--help"], environment: ["COLUMNS": "80"]).stdout
        let section = help.components(separatedBy: "SUBCOMMANDS:").last ?? ""
        let listed = section.split(separator: "\n").compactMap { line -> String? in
            // "  stat                    Print ...": a name at column 2.
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first,
                  name.allSatisfy({ $0.isLetter || $0 == "-" }), line.dropFirst(2).hasPrefix(name + "  ") else { return nil }
            return String(name)
        }
        XCTAssertGreaterThanOrEqual(listed.count, 15, help)
        XCTAssertTrue(listed.contains("stat") && listed.contains("serve"), help)
        return listed + Self.hidden
    }

    private func help(_ subcommand: String) throws -> String {
        let r = try runProduct("cowtrace", [subcommand, "--help"], environment: ["COLUMNS": "80"])
        XCTAssertEqual(r.status, 0, "\(subcommand): \(r.stderr)")
        return r.stdout
    }

    /// Help mentions csv exactly where `--format csv` gets past the parser.
    func testHelpListsOnlyTheFormatsACommandTakes() throws {
        var withCSV: [String] = []
        for sub in try subcommands() {
            let arguments = [sub] + (Self.required[sub] ?? []) + ["--format", "csv"]
            let r = try runProduct("cowtrace", arguments, through: ["/usr/bin/timeout", "30"])
            let refused = r.stderr.contains("'csv' is invalid for '--format") || r.stderr.contains("Unknown option '--format'")
            if refused { XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)") }
            let mentions = try help(sub).lowercased().contains("csv")
            XCTAssertEqual(mentions, !refused, "\(sub): help \(mentions ? "mentions" : "does not mention") csv, --format csv is \(refused ? "refused" : "accepted"): \(r.stderr)")
            if !refused { withCSV.append(sub) }
        }
        // The table commands: if this list shrinks, a format was lost.
        XCTAssertEqual(Set(withCSV), ["stat", "hist", "report", "replay", "check"])
    }

    /// The refusal names what the command does take.
    func testARefusedFormatNamesTheAcceptedOnes() throws {
        for sub in ["forks", "oom", "redis", "fork-profile"] {
            let r = try runProduct("cowtrace", [sub] + (Self.required[sub] ?? []) + ["--format", "csv"])
            XCTAssertEqual(r.status, 64, r.stderr)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
            XCTAssertEqual(errors, ["Error: The value 'csv' is invalid for '--format <format>'. Please provide one of 'text' and 'json'."], sub)
        }
    }

    /// A block introduced by a heading at column 0 ("Examples:", "OPTIONS:")
    /// stays indented to its end (a blank line): a long example line that the
    /// help wrapped would continue at column 0. A new heading (a line ending
    /// in ":" followed by an indented line) may start inside a block.
    func testExampleBlocksStayIndentedAt80Columns() throws {
        for sub in try subcommands() + ["--help-root"] {
            let text = sub == "--help-root" ? try runProduct("cowtrace", ["--help"], environment: ["COLUMNS": "80"]).stdout : try help(sub)
            let lines = text.components(separatedBy: "\n")
            var inBlock = false, blocks = 0
            for (i, line) in lines.enumerated() {
                if line.trimmingCharacters(in: .whitespaces).isEmpty { inBlock = false; continue }
                guard !line.hasPrefix(" ") else { continue }
                let next = i + 1 < lines.count ? lines[i + 1] : ""
                let heading = line.hasSuffix(":") && next.hasPrefix("  ")
                XCTAssertFalse(inBlock && !heading, "\(sub) --help, line \(i + 1) starts at column 0 inside an indented block: \(line)")
                if heading { inBlock = true; blocks += 1 }
            }
            XCTAssertGreaterThan(blocks, 0, "\(sub): no indented block found; the check would pass on anything")
            if sub != "--help-root" && !Self.hidden.contains(sub) {
                XCTAssertTrue(text.contains("\nExamples:\n  ") || text.contains("\nExample:\n  "), "\(sub) has an Examples: block")
            }
        }
    }
}
