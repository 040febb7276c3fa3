import CowTraceSelfTest
import CowTraceFormat
import CowTraceRedis
import ArgumentParser
import CowTraceKit

@main
struct CowTrace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cowtrace",
        abstract: "Trace copy-on-write page faults per process, live, with eBPF.",
        discussion: """
            cowtrace counts every write-protect fault in the kernel and says whether it \
            copied a page (the real cost of fork), reused it, filled a zero page, copied \
            a MAP_PRIVATE file page, or wrote a shared mapping.

            Start with `cowtrace demo` to see a fork whose copies are known in advance, \
            and `cowtrace doctor` to see what this kernel lets cowtrace attach to.
            """,
        version: CowTraceVersion.long,
        subcommands: [Stat.self, Record.self, Replay.self, Check.self, Report.self, Hist.self, Serve.self, Forks.self, Demo.self, Doctor.self, SelfTest.self, Simulate.self, Redis.self, ForkProfile.self, Forecast.self, OOM.self, OOMSelfTestCommand.self, BenchFloor.self]
    )

    /// See OptionChecks: the parser's errors first, then ours.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            OptionChecksPass.enabled = false
            _ = try parseAsRoot(arguments)
            OptionChecksPass.enabled = true
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
