import ArgumentParser
import Foundation
import MMUSim
import MMUSimScenario

/// `cowtrace simulate`: run a fork/CoW/OOM scenario on the simulated MMU.
struct Simulate: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run a copy-on-write scenario on a simulated Linux MMU: no BPF, no root, nothing forked for real.",
        discussion: """
            The simulator models x86-64 page tables, fork's write-protection, the fault \
            handlers of mm/memory.c (copy, reuse, zero-fill, file copy, shared write), \
            overcommit (modes 0, 1 and 2) and the OOM killer. After each step it prints, per \
            process, RSS, private and shared memory, PSS and the pages copied so far, and for \
            the host the memory used, Committed_AS and OOM kills; then a summary.

            A scenario is a built-in name (see --list) or a YAML or JSON file; the schema is \
            in docs/simulate.md, and `--show NAME` prints a built-in as a starting point.

            Examples:
              cowtrace simulate --list
              cowtrace simulate redis-bgsave --summary
              cowtrace simulate --show oom-8g > my.yaml
              cowtrace simulate my.yaml --format json     (after editing my.yaml)
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Argument(help: ArgumentHelp("A built-in scenario name, or a path to a .yaml/.yml/.json scenario file.", valueName: "name|file"))
    var scenario: String?

    @Flag(help: "List the built-in scenarios with a one-line explanation each, and exit.")
    var list = false

    @Flag(help: "Print the YAML of the built-in scenario instead of running it (edit it to make your own).")
    var show = false

    @Flag(help: "Print only the summary, not the table after each step.")
    var summary = false

    @Option(help: "Output format: text (tables) or json (the whole report as one object).")
    var format: Format = .text

    func checkOptions() throws {
        if list { return }
        guard let scenario, !scenario.isEmpty else {
            throw ValidationError("say which scenario to run: a built-in name (see `cowtrace simulate --list`) or a YAML/JSON file")
        }
        if show && Scenario.builtinSource(named: scenario) == nil {
            throw ValidationError("--show prints built-in scenarios only; '\(scenario)' is not one (see `cowtrace simulate --list`)")
        }
        if Scenario.builtinSource(named: scenario) == nil && !FileManager.default.fileExists(atPath: scenario) {
            throw ValidationError(Self.noSuchScenario(scenario))
        }
    }

    func run() throws {
        if list {
            let width = Scenario.builtinNames.map(\.count).max() ?? 0
            for name in Scenario.builtinNames {
                let s = try Scenario.builtin(named: name)!
                print(name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + s.summary)
            }
            return
        }
        let name = scenario!
        if show {
            print(Scenario.builtinSource(named: name)!)
            return
        }
        let loaded = try load(name)
        if format == .json {
            let report = try ScenarioRunner.run(loaded)
            print(try SnakeCaseJSON.prettyPrinted(report))
            try finish(report, of: loaded)
            return
        }
        print("Scenario \(loaded.name)" + (loaded.summary.isEmpty ? "" : ": \(loaded.summary)"))
        let report = try ScenarioRunner.run(loaded) { step in
            guard !summary else { return }
            print("")
            print(ScenarioReport.text(step).joined(separator: "\n"))
            fflush(stdout)
        }
        print("")
        print(report.summaryLines().joined(separator: "\n"))
        try finish(report, of: loaded)
    }

    static func noSuchScenario(_ name: String) -> String {
        "no built-in scenario or file named '\(name)': run `cowtrace simulate --list` for the built-ins, or give the path of a YAML/JSON scenario file"
    }

    /// A built-in name first, then a file path.
    func load(_ name: String) throws -> Scenario {
        if let builtin = try Scenario.builtin(named: name) { return builtin }
        guard FileManager.default.fileExists(atPath: name) else {
            throw SimulateError(Self.noSuchScenario(name))
        }
        guard let data = FileManager.default.contents(atPath: name), let text = String(data: data, encoding: .utf8) else {
            throw SimulateError("cannot read '\(name)' as UTF-8 text: check the file's permissions and encoding")
        }
        do {
            return try Scenario.parse(text, file: name)
        } catch let error as ScenarioError {
            throw SimulateError("\(error) (the schema is in docs/simulate.md)")
        }
    }

    /// Fails the run on a failed expectation, and on a failed step unless the
    /// scenario expects steps to fail (`failed_steps`, which then decides).
    func finish(_ report: ScenarioReport, of scenario: Scenario) throws {
        let countsFailures = scenario.expectations.contains { if case .failedSteps = $0 { true } else { false } }
        if !countsFailures, let step = report.steps.first(where: { $0.error != nil }) {
            let n = report.failedSteps
            throw SimulateError("step \(step.index) of scenario \(report.name) failed: \(step.error!)"
                + (n > 1 ? " (and \(n - 1) more)" : "")
                + "; fix the step, or add `- failed_steps: \(n)` to the expect: list if the scenario means it to fail")
        }
        let failed = report.expectations.filter { !$0.passed }
        guard failed.isEmpty else {
            throw SimulateError("\(failed.count) expectation\(failed.count == 1 ? "" : "s") of scenario \(report.name) failed: "
                + failed.map { "\($0.check) (got \($0.actual))" }.joined(separator: "; ")
                + "; fix the scenario's expect: list or the steps")
        }
    }
}

/// A one-line error naming the problem and the fix; exits non-zero.
struct SimulateError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
