import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print per-process copy-on-write counts, every interval.",
        discussion: """
            Counts are totals since cowtrace started, kept exactly in the kernel. COPIES are \
            pages copied after fork, REUSES write faults that found the page exclusive, \
            ZEROFILL first writes to the shared zero page, FILECOPY MAP_PRIVATE file pages \
            copied, SHARED writes to shared mappings (never copied). Exited processes are \
            marked with *.

            Examples:
              cowtrace stat -c redis-cli bgsave        trace a command and its children, print totals at its end
              cowtrace stat -p 1234 5                  trace pid 1234 (and its future children), print every 5 s
              cowtrace stat --all --format json 1 10   every process, JSON lines, 10 times a second apart
              cowtrace stat --cgroup /sys/fs/cgroup/memory/web
            """
    )

    @Option(name: .shortAndLong, help: "Trace this process and the children it forks from now on (repeatable).")
    var pid: [Int32] = []

    @Option(help: ArgumentHelp("Trace the processes of this cgroup directory and its sub-cgroups (v1 or v2).", valueName: "path"))
    var cgroup: String?

    @Flag(help: "Trace every process on the host.")
    var all = false

    @Option(help: "Output format: text, json (one object per interval) or csv.")
    var format: OutputFormat = .text

    @Option(help: "Text format: show at most this many processes, most copies first (0: all).")
    var top: Int = 20

    @OptionGroup var tierOptions: TierOptions

    @Argument(help: "Seconds between tables (default: 1, or only the final table with -c).")
    var interval: Double?

    @Argument(help: "Stop after this many tables.")
    var count: Int?

    @Option(name: [.customShort("c"), .customLong("command")], parsing: .remaining,
            help: ArgumentHelp("Run this command (must come last) and trace it and its descendants until it exits.", valueName: "command args"))
    var command: [String] = []

    @Flag(help: "Also watch for OOM kills (any process) and print each under the table, with its ancestry (see `cowtrace oom`).")
    var oom = false

    func validate() throws {
        let modes = [!pid.isEmpty || cgroup != nil, all, !command.isEmpty].filter { $0 }.count
        if modes == 0 {
            throw ValidationError("say what to trace: -p PID, -c COMMAND..., --cgroup PATH or --all")
        }
        if all && modes > 1 { throw ValidationError("--all traces everything already: drop -p, -c and --cgroup") }
        if let interval, interval <= 0 { throw ValidationError("interval must be a positive number of seconds") }
        if let count, count <= 0 { throw ValidationError("count must be at least 1") }
        if pid.contains(where: { $0 <= 0 }) { throw ValidationError("a pid must be a positive number") }
    }

    func run() throws {
        do { try trace() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func trace() throws {
        var options = tierOptions.tracerOptions()
        options.selection.all = all
        options.selection.pids = pid
        options.selection.followSpawnedChildren = !command.isEmpty
        let members = try cgroup.map { try CgroupMembers(path: $0) }
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let oomWatcher = oom ? try OOMWatcher(options: options, lineage: false, existingTracer: tracer) : nil
        defer { oomWatcher?.close() }
        var oomPrinted = 0
        for p in members?.pids() ?? [] { try? tracer.trace(pid: p) }

        var child: Int32?
        var childStatus: Int32?
        var stoppedByUs = false
        if !command.isEmpty {
            child = try Subprocess.spawn(command).pid
        }
        defer {
            // Whatever ends the loop, even an error, the command does not outlive us.
            if let c = child, childStatus == nil { kill(c, SIGTERM); _ = Subprocess.wait(c) }
        }
        var history = TraceHistory()
        let period = interval ?? (command.isEmpty ? 1 : .infinity)
        var renderer = TableRenderer(format: format, maxRows: format == .text ? top : 0)
        var printed = 0
        while true {
            StopSignal.sleep(period.isFinite ? period : 3600) {
                oomWatcher?.poll(timeoutMilliseconds: 0)
                if let c = child, childStatus == nil { childStatus = Subprocess.poll(c) }
                return childStatus != nil
            }
            let finished = StopSignal.isRequested || childStatus != nil
            for p in members?.pids() ?? [] { try? tracer.trace(pid: p) }
            let snapshot = history.merge(try tracer.snapshot(), retiringFrom: tracer)
            let table = ProcessTable(snapshot: snapshot, tier: tracer.tier, pageSize: tracer.pageSize)
            let isLast = finished || (count.map { printed + 1 >= $0 } ?? false)
            if period.isFinite || isLast {
                print(renderer.render(table, at: Date(), final: isLast), terminator: format == .text ? "\n" : "")
                fflush(stdout)
                printed += 1
                for report in (oomWatcher?.reports ?? []).dropFirst(oomPrinted) {
                    print(format == .text ? report.text() + "\n" : report.json())
                    oomPrinted += 1
                }
                fflush(stdout)
            }
            if isLast { break }
        }
        if let c = child, childStatus == nil {
            kill(c, SIGTERM)
            childStatus = Subprocess.wait(c)
            stoppedByUs = true
        }
        // Like time(1): a command that failed on its own makes cowtrace fail too.
        if let status = childStatus, status != 0, !stoppedByUs {
            FileHandle.standardError.write(Data("cowtrace: \(command.joined(separator: " ")) exited with status \(status)\n".utf8))
            throw ExitCode(status)
        }
    }
}
