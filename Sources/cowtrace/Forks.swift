import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Forks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every fork as a tree, with what each one cost.",
        discussion: """
            For each fork of a traced process: the parent's time in the fork/clone syscall, \
            the pages it had mapped, the pages the child copied until it exec'd or exited, \
            and the pages the parent copied meanwhile. A child that copied pages and then \
            exec'd is flagged: those copies were pure waste (use vfork/posix_spawn).

            Examples:
              cowtrace forks -c make -j2          a build: which steps fork, and what it costs
              cowtrace forks -p 1234              a server's forks until Ctrl-C
              cowtrace forks --format json -c ./prefork-server
            """
    )

    @Option(name: .shortAndLong, help: "Trace this process and its descendants from now on (repeatable).")
    var pid: [Int32] = []

    @Flag(help: "Trace every process on the host.")
    var all = false

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @Option(help: "Stop after this many seconds (default: until the command exits or Ctrl-C).")
    var duration: Double?

    @OptionGroup var tierOptions: TierOptions

    @Option(name: [.customShort("c"), .customLong("command")], parsing: .remaining,
            help: ArgumentHelp("Run this command (must come last) and trace it and its descendants until it exits.", valueName: "command args"))
    var command: [String] = []

    func validate() throws {
        if pid.isEmpty && !all && command.isEmpty {
            throw ValidationError("say what to trace: -p PID, -c COMMAND... or --all")
        }
        if format == .csv { throw ValidationError("forks prints text or json (a tree is not a table)") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
    }

    func run() throws {
        do { try trace() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func trace() throws {
        var options = tierOptions.tracerOptions()
        options.selection.all = all
        options.selection.pids = pid
        options.selection.followSpawnedChildren = !command.isEmpty
        options.forkLineage = true
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        var childStatus: Int32?
        var stoppedByUs = false
        let child = command.isEmpty ? nil : try Subprocess.spawn(command).pid
        defer { if let c = child, childStatus == nil { kill(c, SIGTERM); _ = Subprocess.wait(c) } }
        StopSignal.sleep(duration ?? .greatestFiniteMagnitude) {
            if let c = child, childStatus == nil { childStatus = Subprocess.poll(c) }
            return childStatus != nil
        }
        if let c = child, childStatus == nil {
            kill(c, SIGTERM)
            childStatus = Subprocess.wait(c)
            stoppedByUs = true
        }
        let lineage = ForkLineage(records: try tracer.forkRecords(), snapshot: try tracer.snapshot(), pageSize: tracer.pageSize)
        print(format == .json ? lineage.renderJSON() : lineage.renderText(), terminator: "")
        let drops = try tracer.drops()
        if drops.total > 0 {
            FileHandle.standardError.write(Data("cowtrace: LOST \(drops.total) records (maps full: raise --max-processes)\n".utf8))
        }
        if let status = childStatus, status != 0, !stoppedByUs {
            FileHandle.standardError.write(Data("cowtrace: \(command.joined(separator: " ")) exited with status \(status)\n".utf8))
            throw ExitCode(status)
        }
    }
}
