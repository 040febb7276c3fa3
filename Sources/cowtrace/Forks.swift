import CowTraceFormat
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Forks: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "forks",
        abstract: "Show every fork as a tree, with what each one cost.",
        discussion: """
            For each fork of a traced process: the parent's time in the fork/clone syscall, \
            the pages it had mapped, the pages the child copied until it exec'd or exited, \
            and the pages the parent copied meanwhile. A child that copied pages and then \
            exec'd is flagged: those copies were pure waste (use vfork/posix_spawn).

            Examples:
              cowtrace forks -c make -j2          a build: which steps fork, at what cost
              cowtrace forks -p 1234              a server's forks until Ctrl-C
              cowtrace forks --format json -c ./prefork-server
            """
    )

    @Option(name: .customLong("format"), help: "Output format: text or json.")
    var formatChoice: FormatChoice<TextOrJSON> = .text
    var format: OutputFormat { formatChoice.format }

    @Option(help: ArgumentHelp("Stop after this long: 30 (seconds), 500ms, 2m, 1h (default: until the command exits or Ctrl-C).", valueName: "time"))
    var duration: Seconds?

    @OptionGroup var tierOptions: TierOptions

    @OptionGroup var selection: SelectionOptions

    func checkOptions() throws {
        try selection.requireSelection()
        try TimeOption.check(duration, "--duration")
    }

    func run() throws {
        do { try trace() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func trace() throws {
        var options = tierOptions.tracerOptions()
        selection.apply(to: &options)
        options.forkLineage = true
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let run = try TracedRun(selection: selection) { try? tracer.trace(pid: $0) }
        try run.start()
        StopSignal.sleep(duration?.value ?? .greatestFiniteMagnitude) {
            run.refresh()
            return run.commandExited()
        }
        run.end()
        let lineage = ForkLineage(records: try tracer.forkRecords(), snapshot: try tracer.snapshot(), pageSize: tracer.pageSize)
        print(format == .json ? lineage.renderJSON() : lineage.renderText(), terminator: "")
        let drops = try tracer.drops()
        if drops.total > 0 {
            FileHandle.standardError.write(Data("cowtrace: LOST \(drops.total) records (maps full: raise --max-processes)\n".utf8))
        }
        try run.finish()
    }
}
