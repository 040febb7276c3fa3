import CowTraceFormat
import CowTraceKit
import Foundation

/// What a real process holds, read from /proc: the figures the OOM killer's
/// badness uses (rss, swap entries, page tables, oom_score_adj) and the
/// pages a fork's child could copy (the private writable anonymous pages).
public struct ProcessMemory: Sendable, Equatable {
    public var pid: Int32
    public var comm: String
    public var uid: UInt32
    public var anonBytes: UInt64
    public var fileBytes: UInt64
    public var shmemBytes: UInt64
    public var swapBytes: UInt64
    public var pageTableBytes: UInt64
    public var oomScoreAdj: Int
    /// Resident anonymous bytes of private writable mappings (smaps'
    /// "Anonymous:"): what a child that writes every page copies.
    public var copyableBytes: UInt64
    /// Resident page-cache bytes of private writable file mappings not yet
    /// copied: a child writing them makes file copies (counted apart).
    public var privateFileBytes: UInt64
    /// The size of the private writable mappings (resident or not): what a
    /// fork charges again to Committed_AS (overcommit mode 2 refuses it beyond CommitLimit).
    public var privateWritableVMBytes: UInt64 = 0
    /// The memory cgroup path ("/system.slice/x.service"), nil when unknown.
    public var memoryCgroup: String?

    public init(pid: Int32, comm: String, uid: UInt32 = 0, anonBytes: UInt64, fileBytes: UInt64 = 0, shmemBytes: UInt64 = 0,
                swapBytes: UInt64 = 0, pageTableBytes: UInt64 = 0, oomScoreAdj: Int = 0, copyableBytes: UInt64,
                privateFileBytes: UInt64 = 0, memoryCgroup: String? = nil) {
        self.pid = pid; self.comm = comm; self.uid = uid
        self.anonBytes = anonBytes; self.fileBytes = fileBytes; self.shmemBytes = shmemBytes
        self.swapBytes = swapBytes; self.pageTableBytes = pageTableBytes; self.oomScoreAdj = oomScoreAdj
        self.copyableBytes = copyableBytes; self.privateFileBytes = privateFileBytes; self.memoryCgroup = memoryCgroup
        self.privateWritableVMBytes = copyableBytes
    }

    /// rss + swap + page tables, in bytes: oom_badness before oom_score_adj.
    public var badnessBytes: UInt64 { anonBytes + fileBytes + shmemBytes + swapBytes + pageTableBytes }

    /// Reads a live process; nil when it is gone (or a kernel thread, which has no mm).
    /// `smaps` (per-mapping, root for other users' processes) gives the
    /// copyable pages; without it they are taken as RssAnon.
    public static func read(pid: Int32, smaps: Bool = true) -> ProcessMemory? {
        // The cgroup before the status: an exiting task drops its mm (the
        // status loses its Rss lines) before it leaves its cgroup, so a
        // status with an mm vouches for the cgroup read before it.
        let cgroup = readPseudoFile("/proc/\(pid)/cgroup").flatMap(memoryCgroupPath)
        guard let status = readPseudoFile("/proc/\(pid)/status"), !status.isEmpty else { return nil }
        let fields = parseStatus(status)
        guard let anon = fields["RssAnon"] else { return nil } // kernel threads have no Rss lines
        let adj = readPseudoFile("/proc/\(pid)/oom_score_adj").flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let uid = fields.raw["Uid"].flatMap { $0.split(whereSeparator: \.isWhitespace).first }.flatMap { UInt32($0) } ?? 0
        var memory = ProcessMemory(pid: pid, comm: fields.raw["Name"] ?? "?", uid: uid, anonBytes: anon,
                                   fileBytes: fields["RssFile"] ?? 0, shmemBytes: fields["RssShmem"] ?? 0,
                                   swapBytes: fields["VmSwap"] ?? 0, pageTableBytes: fields["VmPTE"] ?? 0,
                                   oomScoreAdj: adj, copyableBytes: anon,
                                   memoryCgroup: cgroup)
        if smaps, let text = readPseudoFile("/proc/\(pid)/smaps"), !text.isEmpty {
            let s = privateWritable(smaps: text)
            memory.copyableBytes = s.anon
            memory.privateFileBytes = s.file
            memory.privateWritableVMBytes = s.size
        }
        return memory
    }

    struct StatusFields {
        var raw: [String: String] = [:]
        /// A "kB" field in bytes.
        subscript(_ key: String) -> UInt64? {
            raw[key].flatMap { UInt64($0.split(separator: " ").first ?? "") }.map { $0 * 1024 }
        }
    }

    static func parseStatus(_ text: String) -> StatusFields {
        var f = StatusFields()
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            f.raw[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return f
    }

    /// Sums "Anonymous:" and the rest of "Rss:" (page cache not yet copied)
    /// over the private writable mappings of a /proc/PID/smaps text.
    static func privateWritable(smaps text: String) -> (anon: UInt64, file: UInt64, size: UInt64) {
        var anon: UInt64 = 0, file: UInt64 = 0, size: UInt64 = 0
        var counting = false, isFile = false
        var rss: UInt64 = 0, mappingAnon: UInt64 = 0, mappingSize: UInt64 = 0
        func flush() {
            if counting {
                anon += mappingAnon
                size += mappingSize
                if isFile, rss > mappingAnon { file += rss - mappingAnon }
            }
            rss = 0; mappingAnon = 0; mappingSize = 0
        }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = parts.first else { continue }
            if first.contains("-") && !first.hasSuffix(":"), parts.count >= 5 {
                flush()
                let perms = parts[1]
                counting = perms.hasPrefix("rw") && perms.hasSuffix("p")
                isFile = parts.count > 5 && parts[5].hasPrefix("/") && parts[4] != "0"
            } else if first == "Size:", parts.count > 1 {
                mappingSize = (UInt64(parts[1]) ?? 0) * 1024
            } else if first == "Rss:", parts.count > 1 {
                rss = (UInt64(parts[1]) ?? 0) * 1024
            } else if first == "Anonymous:", parts.count > 1 {
                mappingAnon = (UInt64(parts[1]) ?? 0) * 1024
            }
        }
        flush()
        return (anon, file, size)
    }

    /// The memory controller's path in a /proc/PID/cgroup text: the v1
    /// "N:...memory...:/path" line, else the v2 "0::/path" line.
    public static func memoryCgroupPath(_ text: String) -> String? {
        MemoryCgroupHierarchy.path(inProcCgroup: text, version: .v1) ?? MemoryCgroupHierarchy.path(inProcCgroup: text, version: .v2)
    }
}
