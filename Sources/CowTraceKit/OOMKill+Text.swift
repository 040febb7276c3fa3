import Foundation

/// One kill with its ancestry, as `cowtrace oom` and `cowtrace stat --oom` print it.
public struct OOMReport: Sendable, Codable {
    public var kill: OOMKill
    public var ancestry: OOMAncestry?
    public var lineage: String?

    public init(kill: OOMKill, ancestry: OOMAncestry?) {
        self.kill = kill
        self.ancestry = ancestry
        lineage = ancestry?.line(killedAtNanoseconds: kill.timestampNanoseconds)
    }

    /// A few indented lines.
    public func text() -> String {
        let k = kill
        var kind: String
        switch k.constraint {
        case .memcg: kind = "memory cgroup \(k.oomCgroup ?? "(victim's or an ancestor)")"
        case .global: kind = "global (whole machine)"
        case .unknown: kind = "unknown constraint"
        }
        if let pages = k.limitPages {
            kind += ", limit \(pages) pages (\(OOMFormat.mebibytes(pages * 4096))"
            kind += k.limitSource == "cgroupfs" ? ", read from cgroupfs)" : ")"
        }
        var lines = ["OOM kill: \(kind)"]
        lines.append("  victim   \(k.pid) (\(k.comm))\(k.tid != k.pid ? " thread \(k.tid)" : "")" +
                     (k.victimRead ? " uid \(k.uid) oom_score_adj \(k.oomScoreAdj)" : " (only the pid is known on this kernel's tracepoint)"))
        if k.victimRead {
            lines.append("  memory   total-vm \(k.totalVMKiB) kB, anon-rss \(k.anonRSSKiB) kB, file-rss \(k.fileRSSKiB) kB, shmem-rss \(k.shmemRSSKiB) kB, swap \(k.swapKiB) kB, pgtables \(k.pageTablesKiB) kB")
            lines.append("  cgroup   \(k.cgroup)" + (k.cgroupLimitBytes.map { ", limit \(OOMFormat.mebibytes($0))" } ?? ""))
        }
        lines.append("  trigger  \(k.triggerPID) (\(k.triggerComm))\(k.triggerPID == k.pid ? ": the victim itself ran out" : "")")
        if let lineage { lines.append("  lineage  \(lineage)") }
        return lines.joined(separator: "\n")
    }
}
