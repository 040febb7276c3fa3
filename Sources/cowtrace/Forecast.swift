import ArgumentParser
import CowTraceForecast
import CowTraceFormat
import Foundation

struct Forecast: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "forecast",
        abstract: "Forecast a fork of a running process: the peak it would reach and whom the OOM killer would choose.",
        discussion: """
            Reads the process's address space (/proc/PID/smaps and status) and the memory \
            domain that runs out first (the memory cgroup among its ancestors with the least \
            left under its limit, or the host: MemAvailable plus free swap, and under \
            overcommit mode 2 the commit headroom), then runs the simulated MMU: the process \
            and the largest others of its domain, a fork, and a child that writes every \
            private writable anonymous page. No fork happens and nothing is traced: it needs \
            no BPF, only the right to read the process's smaps (root for other users').

            It answers: if PID forked now and the child wrote every page, the peak would be \
            X; the OOM killer would act after Y copied (or not at all), and would choose Z, \
            under overcommit mode M (mode 2 may refuse the fork itself).

            Examples:
              sudo cowtrace forecast -p $(pidof redis-server)
              sudo cowtrace forecast -p 1234 --format json
            """
    )

    @Option(name: .shortAndLong, help: "The process that would fork.")
    var pid: Int32

    @Option(name: .customLong("format"), help: "Output format: text or json.")
    var formatChoice: FormatChoice<TextOrJSON> = .text
    var format: OutputFormat { formatChoice.format }

    func checkOptions() throws {
        if pid <= 0 { throw ValidationError("-p wants a process id above 0 (got \(pid))") }
    }

    func run() throws {
        guard let target = ProcessMemory.read(pid: pid) else {
            FileHandle.standardError.write(Data("cowtrace: no process \(pid) with an address space (gone, a kernel thread, or not readable: try sudo)\n".utf8))
            throw ExitCode(1)
        }
        let domain = MemoryDomain.of(cgroup: target.memoryCgroup)
        let others = domain.memberPIDs().filter { $0 != pid }.compactMap { ProcessMemory.read(pid: $0, smaps: false) }
        let forecast = try ForkForecast.run(target: target, domain: domain, others: others)
        print(format == .json ? Self.json(forecast) : Self.text(forecast).joined(separator: "\n"))
    }

    static func bytes(_ b: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[i])
    }

    static func text(_ f: ForkForecast) -> [String] {
        let t = f.target, d = f.domain
        var lines = [
            "process:   \(t.pid) (\(t.comm)): rss \(bytes(t.anonBytes + t.fileBytes + t.shmemBytes)), \(bytes(f.copyableBytes)) private writable anonymous (what a child writing every page copies), oom_score_adj \(t.oomScoreAdj)",
            "domain:    \(d.cgroup.map { "cgroup \($0)" } ?? "host"): limit \(bytes(d.limitBytes)), used \(bytes(d.usageBytes)), swap left \(bytes(d.swapFreeBytes)), headroom \(bytes(d.headroomBytes))",
            "overcommit: mode \(d.overcommitMode)" + (d.overcommitMode == 2 ? ", commit headroom \(bytes(UInt64(max(d.commitHeadroomBytes, 0))))" : ""),
        ]
        if f.forkRefused {
            lines.append("forecast:  the fork itself would fail (ENOMEM): overcommit mode 2 cannot commit \(bytes(t.privateWritableVMBytes)) more")
            return lines
        }
        lines.append("forecast:  peak \(bytes(f.peakBytes)) of \(bytes(d.limitBytes + d.swapFreeBytes)): " +
                     (f.atRisk ? "AT RISK: the OOM killer acts after about \(bytes(f.copiedBeforeOOMBytes ?? d.headroomBytes)) copied"
                               : "fits (\(bytes(d.headroomBytes - min(d.headroomBytes, f.copyableBytes))) would be left)"))
        if let v = f.victim {
            lines.append("victim:    \(f.victimIsChild ? "the child of \(t.pid) (\(v.comm))" : "\(v.pid) (\(v.comm))"), \(v.points) points, oom_score_adj \(v.oomScoreAdj) (simulated MMU, \(f.modelledProcesses) processes modelled)")
        }
        return lines
    }

    static func json(_ f: ForkForecast) -> String {
        var fields: [String] = [
            "\"schema_version\":1",
            "\"pid\":\(f.target.pid)",
            "\"comm\":\(OutputFormat.jsonString(f.target.comm))",
            "\"domain\":\(OutputFormat.jsonString(f.domain.name))",
            "\"limit_bytes\":\(f.domain.limitBytes)",
            "\"usage_bytes\":\(f.domain.usageBytes)",
            "\"swap_free_bytes\":\(f.domain.swapFreeBytes)",
            "\"headroom_bytes\":\(f.domain.headroomBytes)",
            "\"overcommit_mode\":\(f.domain.overcommitMode)",
            "\"copyable_bytes\":\(f.copyableBytes)",
            "\"peak_bytes\":\(f.peakBytes)",
            "\"fork_refused\":\(f.forkRefused)",
            "\"at_risk\":\(f.atRisk)",
            "\"copied_before_oom_bytes\":\(f.copiedBeforeOOMBytes.map { "\($0)" } ?? "null")",
            "\"modelled_processes\":\(f.modelledProcesses)",
        ]
        if let v = f.victim {
            fields.append("\"likely_victim\":{\"pid\":\(f.victimIsChild ? "null" : "\(v.pid)"),\"is_child\":\(f.victimIsChild),\"comm\":\(OutputFormat.jsonString(v.comm)),\"points\":\(v.points),\"oom_score_adj\":\(v.oomScoreAdj)}")
        } else {
            fields.append("\"likely_victim\":null")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}
