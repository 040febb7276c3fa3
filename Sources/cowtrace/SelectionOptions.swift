import CowTraceFormat
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What to trace: the options `record`, `hist`, `serve` (and the other tracing
/// subcommands) share. `-c` must come last: it takes the rest of the line.
/// Commands that need a selection call `requireSelection()`; `serve` traces
/// everything (`--all`) without one.
struct SelectionOptions: ParsableArguments, OptionChecks {
    @Option(name: .shortAndLong, help: "Trace this process and the children it forks from now on (repeatable).")
    var pid: [Int32] = []

    @Option(help: ArgumentHelp("Trace the processes of this cgroup directory and its sub-cgroups (v1 or v2).", valueName: "path"))
    var cgroup: String?

    @Flag(help: "Trace every process on the host.")
    var all = false

    @Option(name: [.customShort("c"), .customLong("command")], parsing: .remaining,
            help: ArgumentHelp("Run this command (must come last) and trace it and its descendants until it exits. cowtrace exits with its status if it fails; Ctrl-C or SIGTERM is passed on to it, and cowtrace then exits 130 or 143.", valueName: "command args"))
    var command: [String] = []

    func checkOptions() throws {
        let modes = [!pid.isEmpty || cgroup != nil, all, !command.isEmpty].filter { $0 }.count
        if all && modes > 1 { throw ValidationError("--all traces everything already: drop -p, -c and --cgroup") }
        if pid.contains(where: { $0 <= 0 }) { throw ValidationError("a pid must be a positive number") }
        // A path that is no cgroup is a usage mistake (64), found before anything attaches.
        if let cgroup {
            do { _ = try CgroupMembers(path: cgroup) } catch let e as TracerError { throw ValidationError(e.description) }
        }
    }

    /// Nothing chosen: no -p, -c, --cgroup or --all.
    var isEmpty: Bool { pid.isEmpty && cgroup == nil && !all && command.isEmpty }

    func requireSelection() throws {
        if isEmpty { throw ValidationError("say what to trace: -p PID, -c COMMAND..., --cgroup PATH or --all") }
    }

    func apply(to options: inout TracerOptions) {
        options.selection.all = all
        options.selection.pids = pid
        options.selection.followSpawnedChildren = !command.isEmpty
    }

    /// As the user wrote it, for headers and titles.
    var summary: String {
        if all { return "--all" }
        var parts = pid.map { "-p \($0)" }
        if let cgroup { parts.append("--cgroup \(cgroup)") }
        if !command.isEmpty { parts.append("-c " + command.joined(separator: " ")) }
        return parts.joined(separator: " ")
    }
}

/// The `-c` command and the `--cgroup` members of one tracing run: starts the
/// command, keeps new cgroup members traced, tells when the command ended,
/// and never lets the command outlive cowtrace.
final class TracedRun {
    let selection: SelectionOptions
    private let members: CgroupMembers?
    private(set) var child: Int32?
    private(set) var childStatus: ExitStatus?
    private var stoppedByUs = false

    /// How long a command may take to die of the signal we passed on before it gets SIGKILL.
    static let stopGraceSeconds = 5.0

    /// `trace` is called for each cgroup member, now and on `refresh()`.
    init(selection: SelectionOptions, trace: @escaping (Int32) -> Void) throws {
        self.selection = selection
        members = try selection.cgroup.map { try CgroupMembers(path: $0) }
        self.trace = trace
        refresh()
    }

    private let trace: (Int32) -> Void

    /// Starts the `-c` command, if any (after the tracer is attached).
    func start() throws {
        if !selection.command.isEmpty { child = try Subprocess.spawn(selection.command).pid }
    }

    /// Traces cgroup members that joined since the last call.
    func refresh() {
        for p in members?.pids() ?? [] { trace(p) }
    }

    /// True once the `-c` command has exited.
    func commandExited() -> Bool {
        if let c = child, childStatus == nil { childStatus = Subprocess.pollExit(c) }
        return childStatus != nil
    }

    /// Ends the command if it still runs, so that the final table sees it exit:
    /// it gets the signal that stopped cowtrace (SIGINT, SIGTERM), or SIGTERM
    /// when cowtrace stops for its own reason (count, duration), and SIGKILL
    /// if it is still alive after `stopGraceSeconds`.
    func end() {
        guard let c = child, !commandExited() else { return }
        kill(c, StopSignal.signalNumber ?? SIGTERM)
        stoppedByUs = true
        let deadline = DispatchTimeShim.now() + Self.stopGraceSeconds
        while !commandExited() && DispatchTimeShim.now() < deadline { usleep(10_000) }
        if childStatus == nil {
            kill(c, SIGKILL)
            childStatus = Subprocess.waitForExit(c)
        }
    }

    /// The exit status cowtrace owes its caller, thrown as ExitCode. With -c:
    /// 128 + the signal that stopped the run (130 for Ctrl-C, 143 for SIGTERM),
    /// since the command did not finish; or, like time(1), the command's own
    /// status when it failed by itself. Without -c a signal is the ordinary
    /// way to stop, and exits 0.
    func finish() throws {
        end()
        if let signal = StopSignal.signalNumber, child != nil { throw ExitCode(128 + signal) }
        if let status = childStatus, status.shellCode != 0, !stoppedByUs {
            FileHandle.standardError.write(Data("cowtrace: \(selection.command.joined(separator: " ")) \(status)\n".utf8))
            throw ExitCode(status.shellCode)
        }
    }

    deinit {
        if let c = child, childStatus == nil { kill(c, SIGTERM); _ = Subprocess.wait(c) }
    }
}
