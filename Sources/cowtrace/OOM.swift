import CowTraceSelfTest
import CowTraceFormat
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct OOM: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "oom",
        abstract: "Report OOM kills: the victim, its memory, its cgroup, who triggered it, and its fork ancestry.",
        discussion: """
            Hooks oom:mark_victim (both kernel prototypes) and, where the tier allows, \
            oom_kill_process for the limit judged against. Victim figures are in kB, like \
            the kernel's "Killed process" line. The ancestry line says who forked the victim \
            and how much it copied since (counted by the main tracer, every process, from \
            the moment cowtrace started).

            Examples:
              sudo cowtrace oom                          wait for kills until Ctrl-C
              sudo cowtrace oom --duration 60 --format json
              sudo cowtrace oom -c ./build-farm.sh       watch while a command runs
            """
    )

    @Option(name: .customLong("format"), help: "Output format: text or json (one object per kill).")
    var formatChoice: FormatChoice<TextOrJSON> = .text
    var format: OutputFormat { formatChoice.format }

    @Option(help: ArgumentHelp("Stop after this long: 60 (seconds), 500ms, 2m, 1h.", valueName: "time"))
    var duration: Seconds?

    @Flag(help: "Do not run the main tracer: no ancestry copies (cheaper on busy hosts).")
    var noLineage = false

    @OptionGroup var tierOptions: TierOptions

    @Option(name: [.customShort("c"), .customLong("command")], parsing: .remaining,
            help: ArgumentHelp("Run this command (must come last) and stop when it exits.", valueName: "command args"))
    var command: [String] = []

    func checkOptions() throws {
        try TimeOption.check(duration, "--duration")
    }

    func run() throws {
        do { try watch() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func watch() throws {
        StopSignal.install()
        let watcher = try OOMWatcher(options: tierOptions.tracerOptions(), lineage: !noLineage)
        defer { watcher.close() }
        let format = self.format
        watcher.onReport { report in
            print(format == .json ? ((try? SnakeCaseJSON.line(report)) ?? "{}") : report.text() + "\n")
            fflush(stdout)
        }
        if format == .text {
            FileHandle.standardError.write(Data("cowtrace oom: watching (tier \(watcher.oom.tier), mark_victim(\(watcher.oom.plan.markVictimPrototype))\(watcher.lineage == nil ? ", no lineage" : "")); Ctrl-C to stop\n".utf8))
        }
        var child: Int32?
        var childStatus: ExitStatus?
        if !command.isEmpty { child = try Subprocess.spawn(command).pid }
        let deadline = duration.map { DispatchTimeShim.now() + $0.value }
        while !StopSignal.isRequested {
            watcher.poll(timeoutMilliseconds: 200)
            if let c = child, childStatus == nil, let s = Subprocess.pollExit(c) { childStatus = s; break }
            if let d = deadline, DispatchTimeShim.now() >= d { break }
        }
        watcher.poll(timeoutMilliseconds: 100)
        if let c = child, childStatus == nil { kill(c, SIGTERM); childStatus = Subprocess.waitForExit(c) }
        let lost = try watcher.oom.lostRecords()
        if lost > 0 { FileHandle.standardError.write(Data("cowtrace oom: \(lost) kill records lost (ring buffer full)\n".utf8)) }
        if let status = childStatus, status.shellCode != 0 {
            FileHandle.standardError.write(Data("cowtrace: \(command.joined(separator: " ")) \(status)\n".utf8))
        }
    }
}

struct OOMSelfTestCommand: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "oom-selftest",
        abstract: "Cause a real memory-cgroup OOM kill and check cowtrace's report against the kernel's line.",
        discussion: """
            Creates a 64 MiB memory cgroup without swap (cgroup v2: memory.max and \
            memory.swap.max under a subtree with +memory in cgroup.subtree_control, enabled \
            for the test if missing; v1: memory.limit_in_bytes), runs cowtrace-workload in it (48 MiB, fork, the \
            child rewrites every page), waits for the kill and compares the reported victim \
            with the kernel's "Killed process" line in /dev/kmsg (\(OOMSelfTest.toleranceDescription)). \
            Prints PASS or FAIL per figure; exits 1 on a failure. Used by scripts/kernel-matrix.

            Examples:
              sudo cowtrace oom-selftest
              sudo cowtrace oom-selftest --parent-cgroup /sys/fs/cgroup/cowtrace.slice
            """,
        shouldDisplay: false
    )

    @OptionGroup var tierOptions: TierOptions

    @Option(help: ArgumentHelp("Give up waiting for the kill after this long: 60 (seconds), 90s, 2m.", valueName: "time"))
    var timeout: Seconds = "60"

    @Option(help: ArgumentHelp("Create the test cgroup under this cgroup directory (default: the memory hierarchy's top). On cgroup v2 it must hold no processes of its own.", valueName: "dir"))
    var parentCgroup: String?

    func checkOptions() throws {
        try TimeOption.check(timeout, "--timeout")
        if let parentCgroup, !FileManager.default.fileExists(atPath: parentCgroup + "/cgroup.procs") {
            throw ValidationError("--parent-cgroup \(parentCgroup) is not a cgroup directory (it has no cgroup.procs)")
        }
    }

    func run() throws {
        do {
            let test = OOMSelfTest(options: tierOptions.tracerOptions(), workload: try Workload.locate(), timeoutSeconds: timeout.value,
                                   parentCgroup: parentCgroup)
            let result = try test.run()
            print("cowtrace oom-selftest: kernel \(KernelFacts.read().release), tier \(result.tier), mark_victim(\(result.markVictimPrototype)), cgroup \(result.cgroupVersion) \(result.cgroupDirectory)")
            for note in result.notes { print("note:    \(note)") }
            if let line = result.kernelLine { print("kernel:  \(line.text)") }
            if let kill = result.kill { print(OOMReport(kill: kill, ancestry: nil).text()) }
            if let lineage = result.lineage { print("lineage: \(lineage)") }
            for c in result.checks {
                print("\(c.passed ? "PASS" : "FAIL") \(c.name.padding(toLength: 24, withPad: " ", startingAt: 0)) reported \(c.reported), kernel \(c.kernel)\(c.note.map { " (\($0))" } ?? "")")
            }
            if result.lostRecords > 0 { print("lost records: \(result.lostRecords)") }
            print(result.passed ? "PASS oom-selftest" : "FAIL oom-selftest")
            if !result.passed { throw ExitCode(1) }
        } catch let e as ExitCode {
            throw e
        } catch let e as OOMSelfTestError {
            throw CLIError(description: e.description)
        } catch {
            throw cliError(error)
        }
    }
}
