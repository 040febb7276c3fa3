import CowTraceMetrics
import CowTraceFormat
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Serve: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve per-process copy-on-write counts and histograms to Prometheus.",
        discussion: """
            Traces like `cowtrace stat` and serves what the kernel counted at \
            http://ADDR:PORT/metrics in the Prometheus text format, until Ctrl-C or \
            SIGTERM. Every scrape reads the kernel's counters at that moment. With -c, \
            the command's end does not stop the server: its counts stay visible (pass \
            --exit-with-command to stop with it). Without -p, -c or --cgroup, every \
            process is traced (--all).

            Metrics (docs/exports.md has them all): \
            cowtrace_write_protect_faults_total{cgroup,class} with class copy, reuse, \
            zero_fill, file_copy or shared_write; cowtrace_copied_bytes_total; \
            cowtrace_forks_total; cowtrace_execs_total; the histograms \
            cowtrace_copy_latency_seconds, cowtrace_copies_per_interval and \
            cowtrace_fault_offset_bytes{mapping}; cowtrace_dropped_events_total{reason}; \
            cowtrace_dropped_processes_total{reason}; cowtrace_copies_per_interval_seconds; \
            cowtrace_info{tier,kernel,version}; cowtrace_traced_processes; \
            cowtrace_bpf_stats_enabled and, per attached BPF program, \
            cowtrace_bpf_program_runs_total{program} and \
            cowtrace_bpf_program_run_seconds_total{program} (counted by the kernel \
            only while kernel.bpf_stats_enabled is 1). Series are \
            keyed by cgroup (--group-by cgroup, the default; with container_id and \
            pod_uid labels where the path names them), by comm, or by pid: at most \
            --max-groups groups get series of their own, the rest are summed into \
            cgroup="other"; with --group-by pid only the --top processes with the most \
            pages copied do, the rest are summed into pid="other". Every counter only \
            grows. A scrape that accepts application/openmetrics-text gets OpenMetrics \
            with exemplars (a recent copying pid and comm) on cowtrace_copied_bytes_total.

            Examples:
              cowtrace serve                         every process, on 127.0.0.1:9464
              cowtrace serve -p 1234 --listen 127.0.0.1:9500
                                                     pid 1234 and its future children
              cowtrace serve --group-by pid --top 200 -c make -j2
                                                     a command, per process; served
                                                     after it ends
              curl -s 127.0.0.1:9464/metrics | grep 'class="copy"'

            Prometheus (prometheus.yml):
              scrape_configs:
                - job_name: cowtrace
                  scrape_interval: 5s
                  static_configs:
                    - targets: ['127.0.0.1:9464']
            Then, e.g., the bytes copied per second by each cgroup:
              rate(cowtrace_copied_bytes_total[1m])

            Listening on another address than loopback makes the pids and command \
            names of the traced processes readable from the network: cowtrace warns.
            """
    )

    @Option(help: ArgumentHelp("Address to serve on: IPV4:PORT or [IPV6]:PORT; port 0 picks a free one (printed).", valueName: "addr:port"))
    var listen: String = ListenAddress.defaultText

    @Option(help: ArgumentHelp("Processes with series of their own, most pages copied first; the rest are summed into pid=\"other\".", valueName: "n"))
    var top: Int = MetricsExposition.defaultTop

    @Option(help: ArgumentHelp("Key the series by cgroup (the default; with container_id and pod_uid where the path names them), comm, or pid (the --top processes: one-host debugging).", valueName: "cgroup|comm|pid"))
    var groupBy: MetricsGrouping = .cgroup

    @Option(help: ArgumentHelp("With --group-by cgroup or comm: groups with series of their own; later groups are summed into cgroup=\"other\" (or comm=\"other\").", valueName: "n"))
    var maxGroups: Int = MetricsAggregator.defaultMaxGroups

    @Option(help: ArgumentHelp("Live forks (child not exec'd) with fork-risk series of their own (cowtrace_fork_shared_bytes, _headroom_bytes, _copy_rate_bytes, _at_risk), the most shared first; 0: none. See docs/forecast.md.", valueName: "n"))
    var maxForks: Int = 20

    @Flag(help: "With -c: stop serving when the command exits (its exit status becomes cowtrace's).")
    var exitWithCommand = false

    @Flag(help: "Also export cowtrace_fault_offset_bytes (write-protect faults by mapping kind). Off by default for a daemon: on the tracepoint tier it costs a VMA lookup (about 1 µs) per write-protect fault.")
    var mappingHistograms = false

    @OptionGroup var tierOptions: TierOptions

    /// Without -p, -c or --cgroup: --all.
    @OptionGroup var selection: SelectionOptions

    private var command: [String] { selection.command }

    func checkOptions() throws {
        if top < 1 { throw ValidationError("--top must be at least 1") }
        if maxGroups < 1 { throw ValidationError("--max-groups must be at least 1") }
        if maxForks < 0 { throw ValidationError("--max-forks must be 0 (no fork series) or more") }
        if exitWithCommand && command.isEmpty { throw ValidationError("--exit-with-command needs -c COMMAND...") }
        // A malformed address is a usage mistake (64); a port in use is found at bind (1).
        do { _ = try ListenAddress(parsing: listen) } catch let e as MetricsServerError { throw ValidationError(e.description) }
    }

    func run() throws {
        do {
            try serve()
        } catch let e as ExitCode {
            throw e
        } catch let e as MetricsServerError {
            throw CLIError(description: e.description)
        } catch {
            throw cliError(error)
        }
    }

    private func serve() throws {
        let address = try ListenAddress(parsing: listen)
        var options = tierOptions.tracerOptions()
        selection.apply(to: &options)
        if selection.isEmpty { options.selection.all = true }
        options.histograms = true
        options.mappingHistograms = mappingHistograms
        let members = try selection.cgroup.map { try CgroupMembers(path: $0) }
        StopSignal.install()
        // Every scrape connection holds a descriptor: the usual soft limit
        // (1024) is below a thousand idle scrapers.
        FileDescriptorLimit.raiseSoftToHard()

        // Bound before the programs load: a port in use fails fast. Scrapes
        // wait in the backlog until the collector exists and start() runs.
        let box = CollectorBox()
        let server = try MetricsServer(listen: address, render: { format in
            guard let collector = box.collector else { throw CLIError(description: "starting") }
            return (try collector.render(format: format), format)
        })
        if let warning = server.address.networkWarning { printError(warning) }
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let collector = MetricsCollector(source: TracerMetricsSource(tracer, keepsExited: groupBy == .pid), top: top, grouping: groupBy,
                                         maxGroups: maxGroups, burstIntervalNanoseconds: max(options.burstIntervalNanoseconds, 1_000_000),
                                         maxForks: maxForks)
        box.collector = collector
        defer { server.stop() } // before the tracer closes: no scrape reads a closed map
        for p in members?.pids() ?? [] { try? tracer.trace(pid: p) }
        server.start()
        printError("serving \(server.address.metricsURL) (tier: \(tracer.tier))")
        if KernelFacts.bpfStatsEnabled() == false {
            printError("cowtrace: kernel.bpf_stats_enabled is 0: cowtrace_bpf_program_runs_total and cowtrace_bpf_program_run_seconds_total do not grow; turn on with \(KernelFacts.bpfStatsHowToEnable)")
        }

        var child: Int32?
        var childStatus: ExitStatus?
        if !command.isEmpty {
            child = try Subprocess.spawn(command).pid
        }
        defer {
            // Whatever ends the loop, even an error, the command does not outlive us.
            if let c = child, childStatus == nil { kill(c, SIGTERM); _ = Subprocess.wait(c) }
        }
        while !StopSignal.isRequested {
            StopSignal.sleep(1) {
                if let c = child, childStatus == nil, let status = Subprocess.pollExit(c) {
                    childStatus = status
                    return true
                }
                return false
            }
            if let status = childStatus, child != nil {
                child = nil
                if exitWithCommand {
                    if status.shellCode != 0 {
                        printError("cowtrace: \(command.joined(separator: " ")) \(status)")
                        throw ExitCode(status.shellCode)
                    }
                    return
                }
                printError("cowtrace: \(command.joined(separator: " ")) \(status); its counts stay served (Ctrl-C to stop)")
            }
            if let members {
                collector.withLock { for p in members.pids() { try? tracer.trace(pid: p) } }
            }
        }
    }
}

private func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// The collector, once the tracer is attached (the server exists before).
private final class CollectorBox: @unchecked Sendable {
    var collector: MetricsCollector? {
        get { lock.lock(); defer { lock.unlock() }; return value }
        set { lock.lock(); value = newValue; lock.unlock() }
    }
    private var value: MetricsCollector?
    private let lock = NSLock()
}

/// The tracer as a metrics source. Exited processes stay in every snapshot
/// with their final counters and histograms, so that their counters never go
/// back to zero for Prometheus. A process is removed from the kernel's maps
/// (which are bounded) one read after its exit was seen: by then its final
/// histograms (the last copies-per-interval interval is closed at exit) have
/// been read too.
final class TracerMetricsSource: MetricsSource {
    private let tracer: CowTracer
    private var retiredCounters: [Int32: ProcessCounters] = [:]
    private var retiredInfo: [Int32: ProcessIdentity] = [:]
    private var retiredHistograms: [Int32: ProcessHistograms] = [:]
    /// Exited at the last read: forgotten by the kernel at the next one.
    private var toForget: [Int32] = []
    private var exitedNow: Set<Int32> = []
    /// Names from the last snapshot, so histograms() need not read them again.
    private var lastIdentities: [Int32: ProcessIdentity] = [:]

    /// false (--group-by cgroup|comm): an exited process is in one snapshot,
    /// the aggregator folds it into its group.
    private let keepsExited: Bool

    init(_ tracer: CowTracer, keepsExited: Bool = true) {
        self.tracer = tracer
        self.keepsExited = keepsExited
    }

    var tier: AttachTier { tracer.tier }
    var pageSize: UInt64 { tracer.pageSize }

    func snapshot() throws -> TraceSnapshot {
        tracer.forget(pids: toForget)
        toForget = []
        var s = try tracer.snapshot()
        lastIdentities = s.info
        exitedNow = []
        for (pid, info) in s.info where info.exited {
            exitedNow.insert(pid)
            toForget.append(pid)
            guard keepsExited else { continue }
            retiredInfo[pid] = info
            if let c = s.counters[pid] { retiredCounters[pid] = c }
        }
        for (pid, c) in retiredCounters where s.counters[pid] == nil {
            s.counters[pid] = c
            s.info[pid] = retiredInfo[pid]
        }
        return s
    }

    /// Called after snapshot() (MetricsCollector does).
    func histograms() throws -> [ProcessHistograms] {
        var current: [Int32: ProcessHistograms] = [:]
        for h in try tracer.histograms(identities: lastIdentities) { current[h.pid] = h }
        guard keepsExited else { return current.keys.sorted().map { current[$0]! } }
        for pid in exitedNow { if let h = current[pid] { retiredHistograms[pid] = h } }
        for (pid, h) in retiredHistograms where current[pid] == nil { current[pid] = h }
        return current.keys.sorted().map { current[$0]! }
    }
}

extension MetricsGrouping: ExpressibleByArgument {}
