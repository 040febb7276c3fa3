import CowTraceSelfTest
import ArgumentParser
import CowTraceKit
import Foundation

struct SelfTest: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check cowtrace's counts on this kernel against workloads whose faults are known.",
        discussion: """
            Runs the scenario matrix of cowtrace-workload (fork, child and parent writes in a \
            fixed order, zero page, MAP_SHARED and MAP_PRIVATE files, fork+exec, THP) under the \
            tracer and compares each class with what the scenario did, within a stated slack \
            (\(Scenario.toleranceDescription)). Exits non-zero if any count is off.

            Examples:
              sudo cowtrace selftest
              sudo cowtrace selftest --tier kprobe
              sudo cowtrace selftest --scenario zero-page --scenario fork-exec
            """
    )

    @OptionGroup var tierOptions: TierOptions

    @Option(help: ArgumentHelp("Run only this scenario (repeatable). Names: \(Scenario.matrix.map(\.name).joined(separator: ", ")).", valueName: "name"))
    var scenario: [String] = []

    @Flag(help: "List the scenarios and exit.")
    var list = false

    @Flag(help: "Also bucket histograms in the kernel and check that they add up to the counters (copies per interval, faults per mapping kind, and copy latency on tiers that see the fault return).")
    var histograms = false

    func checkOptions() throws {
        for name in scenario where Scenario.named(name) == nil {
            throw ValidationError("unknown scenario '\(name)': run `cowtrace selftest --list`")
        }
    }

    func run() throws {
        if list {
            for s in Scenario.matrix { print("\(s.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(s.summary)") }
            return
        }
        do { try runMatrix() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func runMatrix() throws {
        let workload = try Workload.locate()
        var options = tierOptions.tracerOptions()
        options.selection.followSpawnedChildren = true
        options.histograms = histograms
        options.mappingHistograms = histograms
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let runner = ScenarioRunner(tracer: tracer, workload: workload)
        let chosen = scenario.isEmpty ? Scenario.matrix : scenario.compactMap(Scenario.named)
        print("cowtrace selftest: kernel \(KernelFacts.read().release), tier \(tracer.tier), \(tracer.pidIndex) pid index\(histograms ? ", with histograms" : "")\(tracer.copyByAlloc && tracer.tier != .tracepoint ? " (copies found by allocation)" : "")")
        var failed = 0
        for s in chosen {
            let result = try runner.run(s)
            let bad = result.checks.filter { !$0.passed }
            let interesting = result.checks.filter { $0.expected != 0 || $0.observed != 0 }
            let summary = interesting.map { "\($0.role).\($0.measure)=\($0.observed)/\($0.expected)" }.joined(separator: " ")
            print("\(bad.isEmpty ? "PASS" : "FAIL") \(s.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(summary)")
            for c in bad {
                print("     \(c.role) pid \(c.pid) \(c.measure): counted \(c.observed), expected \(c.expected) ± \(c.tolerance)")
            }
            if !bad.isEmpty { failed += 1 }
        }
        let drops = try tracer.drops()
        if drops.total > 0 { print("lost events: \(drops.total)") }
        print("\(chosen.count - failed) passed, \(failed) failed (tier \(tracer.tier))")
        if failed > 0 { throw ExitCode(1) }
    }
}
